-- Undo 0382_call_exports.
-- depends: 0380_call_metadata
DROP TABLE IF EXISTS call_exports;
