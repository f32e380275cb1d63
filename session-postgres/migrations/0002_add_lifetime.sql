-- A session's own lifetime ("remember me"), as session_core::Lifetime::encode
-- writes it: `<idle ms>,<absolute ms>,<c|p|s>`. NULL is the manager's
-- timeouts, which is what every row written before this column existed
-- means, so no row needs rewriting. `{table}` is replaced as in 0001.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS lifetime text;
