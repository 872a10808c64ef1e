-- A commit-ordered position per webhook, so that a resume is exact whatever the number of
-- writers (several hooky processes on one database commit out of id order).
--
-- Each committed batch gets, per webhook it holds, the next position of that webhook: one row in
-- request_batches. A request's place in its webhook's history is (position of its batch, id):
-- all rows of a batch commit at once, and positions are given in commit order, because the
-- counter (webhooks.position) is advanced under the webhook row's lock, which is held until the
-- commit. The lock is taken at the end of the statement, after the rows are inserted, so two
-- batches of one webhook insert their rows at the same time and wait for each other only for
-- the commit (store.ts: insertRequests).
--
-- The rows cannot carry the position itself (it is known only once the lock is held, after they
-- are written); they carry their batch's key instead, and a batch row records the range of ids
-- it holds, so that its rows are found through the (webhook_id, id) index.
alter table webhooks add column position bigint not null default 0;

-- A constant default: no table rewrite. Rows stored before this migration are batch 0.
alter table requests add column batch bigint not null default 0;

create sequence request_batch_keys;

create table request_batches (
  webhook_id  text not null,
  position    bigint not null,
  batch       bigint not null,
  first_id    uuid not null,
  last_id     uuid not null,
  primary key (webhook_id, position)
);
-- A request's position: from its (webhook_id, batch) to the batch row.
create unique index request_batches_batch on request_batches (webhook_id, batch);

-- What was stored before: one writer committed it in id order, so it is one batch per webhook,
-- position 1, batch 0, its rows in id order.
insert into request_batches (webhook_id, position, batch, first_id, last_id)
select webhook_id, 1, 0, min(id::text collate "C")::uuid, max(id::text collate "C")::uuid from requests group by webhook_id;
update webhooks w set position = 1 where exists (select 1 from requests r where r.webhook_id = w.id);
