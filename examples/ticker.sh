#!/bin/sh
# Publishes a made-up stock quote to the "ticker" topic every second, through
# Caddy's admin API. Stop with Ctrl-C.
admin=${ADMIN:-http://localhost:2019}
price=100
while :; do
	step=$(( $(od -An -N1 -tu1 /dev/urandom) % 21 - 10 ))
	price=$(( price + step ))
	[ "$price" -lt 1 ] && price=1
	curl -fsS -X POST "$admin/push/topics/ticker?event=quote" \
		-d "{\"symbol\":\"ACME\",\"price\":$price,\"time\":\"$(date +%T)\"}" >/dev/null || exit 1
	sleep 1
done
