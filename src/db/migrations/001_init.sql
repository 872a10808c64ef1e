-- Webhooks and the requests captured for them.
create table webhooks (
  id          text primary key,
  created_at  timestamptz not null default now(),
  -- The custom answer of the capture route: {status, headers, body, delayMs}; null for the default.
  response    jsonb
);

-- One row per captured request. The payload is stored as the exact JSON that was published, so
-- REST answers and `since` replays send it without re-serialising. `json`, not `jsonb`: it is kept
-- as text (no parse into a tree on the write path) and, unlike jsonb, accepts "\u0000" in bodies.
create table requests (
  id          uuid primary key,            -- UUIDv7: time-ordered
  webhook_id  text not null references webhooks (id) on delete cascade,
  payload     json not null
);

-- Paging newest-first, replay oldest-first and retention all walk (webhook_id, id).
create index requests_webhook_id_id on requests (webhook_id, id);
