-- samenop schema, version 1: one table per keyspace of the store.
--
-- Every table is an ordered map from key to value, as the embedded store
-- keeps it: the key is bytes (ids are 16-byte UUIDs, numbers 8-byte
-- big-endian, so byte order is the order samenop reads in); the value is
-- bytes, a record encoded as protobuf with its schema version (see
-- server/src/store/records.rs), or empty for an index entry. Values are never
-- changed in place by SQL: samenop writes them, in one transaction per
-- group of changes, under the advisory lock samenop_commit.

CREATE TABLE professionals (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE professionals IS 'Professionals by id.';

CREATE TABLE professionals_by_organisation (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE professionals_by_organisation IS 'Index: organisation OIN + professional id → nothing.';

CREATE TABLE specialists (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE specialists IS 'Index: professional id of every specialist → nothing.';

CREATE TABLE specialists_by_expertise (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE specialists_by_expertise IS 'Index: expertise code + professional id → nothing.';

CREATE TABLE devices (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE devices IS 'Devices by id.';

CREATE TABLE devices_by_professional (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE devices_by_professional IS 'Index: professional id + device id → nothing.';

CREATE TABLE device_sets (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE device_sets IS 'Professional id → version of their device set (u64, big-endian), bumped by every device registration and checked by deactivation.';

CREATE TABLE families (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE families IS 'Families by id.';

CREATE TABLE consents (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consents IS 'Consents by id.';

CREATE TABLE consents_by_family (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consents_by_family IS 'Index: family id + consent id → nothing.';

CREATE TABLE consults (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consults IS 'Consults by id (UUIDv7 of the request time: a scan is by time).';

CREATE TABLE consults_by_owner (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consults_by_owner IS 'Index: owner id + consult id → nothing.';

CREATE TABLE consults_by_family (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consults_by_family IS 'Index: family id + consult id → nothing.';

CREATE TABLE consults_by_specialist (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consults_by_specialist IS 'Index: specialist id + consult id → nothing, for every specialist ever invited to, addressed by, or taking part in a consult.';

CREATE TABLE pool_requests (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE pool_requests IS 'Index: expertise code + consult id → nothing, for pool requests still REQUESTED.';

CREATE TABLE consults_by_consent (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consults_by_consent IS 'Index: consent id + consult id → nothing.';

CREATE TABLE audit (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE audit IS 'The audit chain: sequence number (8 bytes, big-endian) → entry.';

CREATE TABLE threads (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE threads IS 'Thread heads: consult id → epoch + last sequence (8 + 8 bytes).';

CREATE TABLE thread_entries (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE thread_entries IS 'Thread messages: consult id + sequence (8 bytes, big-endian) → entry.';

CREATE TABLE thread_requests (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE thread_requests IS 'Answers of accepted posts: consult id + request id → epoch + sequence.';

CREATE TABLE welcomes (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE welcomes IS 'Welcome messages: consult id + device id → the Welcome that added it.';

CREATE TABLE key_packages (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE key_packages IS 'One-time MLS key packages: device id + UUIDv7 → key package.';

CREATE TABLE last_resort_key_packages (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE last_resort_key_packages IS 'Last-resort MLS key packages: device id → key package.';

CREATE TABLE events (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE events IS 'Device event logs: device id + number (8 bytes, big-endian) → event.';

CREATE TABLE event_heads (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE event_heads IS 'Device event-log heads: device id → last number (8 bytes).';

CREATE TABLE consult_deadlines (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consult_deadlines IS 'Index: respond-by time (ms, 8 bytes, big-endian) + consult id → nothing, for consults still REQUESTED: what the expiry sweep reads.';

CREATE TABLE consent_deadlines (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE consent_deadlines IS 'Index: valid-until time (ms, 8 bytes, big-endian) + consent id → nothing, for consents not revoked and not yet swept: the sweep suspends the consults resting on each once it has passed.';

CREATE TABLE attachments (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE attachments IS 'Thread attachments: consult id + attachment id → record.';

CREATE TABLE attachment_chunks (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE attachment_chunks IS 'Encrypted attachment bytes: attachment id + chunk index (8 bytes, big-endian) → bytes.';

CREATE TABLE audit_checkpoints (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE audit_checkpoints IS 'Signed audit checkpoints: sequence (8 bytes, big-endian) → encoded v1::AuditCheckpoint.';

CREATE TABLE audit_index (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE audit_index IS 'Index of the audit chain: kind (1 byte: IndexKind) + id (16 bytes) + sequence (8 bytes, big-endian) → nothing, for every family, consult and professional an event names (the acting professional too). Written with the event, removed with it by retention, so a filtered query reads only the events it returns.';

CREATE TABLE audit_consult_family (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE audit_consult_family IS 'Consult id → family id, for every family consult ever opened: whose events a consult''s events are, kept as long as the audit trail (a consult''s record goes before its events do).';

CREATE TABLE audit_family_consults (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE audit_family_consults IS 'Index: family id + consult id → nothing, the same links the other way: the consults whose events belong to a family''s history.';

CREATE TABLE uploads (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE uploads IS 'Uploads in progress: start time (ms, 8 bytes, big-endian) + attachment id → consult id. Written before an upload''s first chunk, removed with its record or its failure; what a crash leaves behind is found by time and its chunks purged.';

CREATE TABLE event_trims (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE event_trims IS 'Device id → the number up to which the device''s event log was trimmed (8 bytes, big-endian).';

CREATE TABLE meta (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);
COMMENT ON TABLE meta IS 'Store metadata (schema version).';
