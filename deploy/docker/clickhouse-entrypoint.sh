#!/bin/sh
# The entry point of the local ClickHouse image (deploy/images.sh: Debian's clickhouse-server
# 18.16), taking the official image's variables: CLICKHOUSE_USER and CLICKHOUSE_PASSWORD add
# that user with every right (CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT has no meaning on 18.16),
# CLICKHOUSE_SKIP_USER_SETUP=1 leaves the default user open (tests).
set -eu
conf=/etc/clickhouse-server
xml_text() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
if [ -n "${CLICKHOUSE_USER:-}" ] && [ "${CLICKHOUSE_SKIP_USER_SETUP:-0}" != 1 ]; then
    cat > "$conf/users.d/docker.xml" <<XML
<yandex>
    <users>
        <$(xml_text "$CLICKHOUSE_USER")>
            <password>$(xml_text "${CLICKHOUSE_PASSWORD:-}")</password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </$(xml_text "$CLICKHOUSE_USER")>
        <default><networks replace="replace"><ip>::1</ip><ip>127.0.0.1</ip></networks></default>
    </users>
</yandex>
XML
fi
exec clickhouse-server --config-file="$conf/config.xml" "$@"
