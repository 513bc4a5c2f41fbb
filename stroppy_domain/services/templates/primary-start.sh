#!/bin/sh
# Initialises the cluster and its roles on first start only, so a restarted container keeps its data.
set -eu
if [ ! -s "$$PGDATA/PG_VERSION" ]; then
  "$bin_dir/initdb" --pgdata="$$PGDATA" --username=$superuser --pwfile="$conf_dir/superuser.password" \
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --data-checksums
  "$bin_dir/pg_ctl" --pgdata="$$PGDATA" --wait --timeout=120 \
    --options="-c config_file=$conf_dir/postgresql.conf -c listen_addresses=''" start
  "$bin_dir/psql" --no-psqlrc --set=ON_ERROR_STOP=1 --host=$socket_dir --username=$superuser \
    --dbname=postgres --file="$conf_dir/bootstrap.sql"
  "$bin_dir/pg_ctl" --pgdata="$$PGDATA" --wait --timeout=120 stop
fi
exec "$bin_dir/postgres" -D "$$PGDATA" -c config_file="$conf_dir/postgresql.conf"
