-- Counters taken inside the transaction that uses them (`UPDATE ... RETURNING value`), so that a
-- number is allocated under the row's lock and never derived from MAX() over a table, which is
-- not safe under a database with concurrent writers. A rolled back transaction gives its numbers
-- back, as MAX(number) + 1 did.

CREATE TABLE counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL          -- the last value taken
);

-- Ticket numbers (the N of KEY-N) continue from the tickets already there.
INSERT INTO counters (name, value) SELECT 'ticket_number', COALESCE(MAX(number), 0) FROM tickets;
