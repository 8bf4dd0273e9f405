-- What `mission status` reads on every call stays an index search as the store grows.

-- Done tickets whose evidence no longer verifies: only failed records are indexed (few), in the
-- order the snapshot reads them.
CREATE INDEX evidence_failed ON evidence (ticket, verified_at, id) WHERE status = 'failed';

-- The event that recorded a dispatcher-wide value's last change (the capacity's error is read
-- back from it by key).
ALTER TABLE dispatcher_state ADD COLUMN event_seq INTEGER;
