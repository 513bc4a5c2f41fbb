#!/bin/sh
# Dumps the machine's database, then drops dumps older than the retention period.
set -eu
mkdir -p "$directory"
stamp=$$(date -u +%Y%m%dT%H%M%SZ)
PGPASSFILE="$conf_dir/pgpass" "$bin_dir/pg_dump" --host=127.0.0.1 --port=$port \
  --username=$user --no-password --format=custom --file="$directory/$prefix-$$stamp.dump" $database
find "$directory" -name '$prefix-*.dump' -mmin +$retention_minutes -delete
