-- The write path's two largest costs in Postgres, per captured row (`npm run bench -- statements`
-- and bench/README.md):
--
-- 1. The foreign key. Every row re-checked its webhook and took a FOR KEY SHARE lock on it.
--    The group-commit INSERT now locks each webhook of a batch once (FOR KEY SHARE, the lock the
--    foreign key took) and stores only the rows whose webhook it locked; deleting a webhook
--    deletes the webhook row first (waiting for any batch that holds its lock), then its
--    requests, in one transaction. See store.ts: insertRequests and deleteWebhook.
-- 2. Parsing the payload. It is the JSON.stringify output of the capture, valid by construction,
--    and Postgres never looks inside it: `text` stores it as it is, where `json` parsed it once
--    per row to validate it.
--
-- Rewrites the requests table once (a type change), inside the migration's transaction.
alter table requests drop constraint requests_webhook_id_fkey;
alter table requests alter column payload type text;
