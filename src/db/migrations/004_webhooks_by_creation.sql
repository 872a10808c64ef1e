-- The webhook list (`GET /api/webhooks`, newest first, paged by (created_at, id)) walks this
-- index instead of sorting every webhook for each page. Only creations and deletions pay for
-- it, never the capture path.
create index webhooks_created_at_id on webhooks (created_at, id);
