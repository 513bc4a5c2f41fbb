#!/bin/sh
# Clones the primary on first start; the primary may still be initialising, so the clone is retried (bounded).
set -eu
if [ ! -s "$$PGDATA/PG_VERSION" ]; then
  attempt=1
  until "$bin_dir/pg_basebackup" --pgdata="$$PGDATA" --host=$master_ip --port=$port \
      --username=$replication_user --no-password --wal-method=stream --checkpoint=fast; do
    if [ "$$attempt" -ge 90 ]; then
      echo "primary $master_ip:$port could not be cloned after $$attempt attempts" >&2
      exit 1
    fi
    attempt=$$((attempt + 1))
    rm -rf "$$PGDATA"
    sleep 2
  done
  touch "$$PGDATA/standby.signal"
fi
exec "$bin_dir/postgres" -D "$$PGDATA" -c config_file="$conf_dir/postgresql.conf"
