#!/bin/sh
# Patroni runs this once on the bootstrapping node, passing a superuser connection URL as $$1.
set -eu
exec "$bin_dir/psql" --no-psqlrc --set=ON_ERROR_STOP=1 "$$1" --file="$conf_dir/bootstrap.sql"
