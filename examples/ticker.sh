#!/bin/sh
# Publishes a made-up stock quote to the "ticker" topic every second, through
# the example's push_publish route. Stop with Ctrl-C.
pub=${PUB:-http://localhost:${HTTP_PORT:-8080}/pub}
price=100
while :; do
	step=$(( $(od -An -N1 -tu1 /dev/urandom) % 21 - 10 ))
	price=$(( price + step ))
	[ "$price" -lt 1 ] && price=1
	curl -fsS "$pub?topic=ticker&event=quote" \
		-d "{\"symbol\":\"ACME\",\"price\":$price,\"time\":\"$(date +%T)\"}" >/dev/null || exit 1
	sleep 1
done
