#!/usr/bin/env bash
# The egress proxy with real endpoints: nginx (Debian, `sendfile on`) serving a 256 MiB file
# over HTTPS and plain HTTP, curl downloading it directly, through `ward proxy` and through
# squid, in one run, interleaved; best of ROUNDS per column, then the ratios.
#   HTTPS: curl -x PROXY https://...  (a CONNECT tunnel carrying real TLS)
#   HTTP:  curl -x PROXY http://...   (a forward proxy request)
# Needs root for a network namespace of its own (the origin gets a public-looking address, as
# in `ward-bench proxy`). Installs nginx-light and squid when apt can.
#   cargo build --release -p ward && sudo bash bench/proxy-tls.sh
set -euo pipefail
[ -n "${WARD_TLS_TRACE:-}" ] && set -x
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
ROUNDS="${ROUNDS:-3}"
ward="${CARGO_TARGET_DIR:-$PWD/target}/release/ward"
[ -x "$ward" ] || { echo "build ward first: cargo build --release -p ward" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "proxy-tls: needs root (a network namespace of its own)" >&2; exit 2; }
if ! command -v nginx >/dev/null || ! command -v squid >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light squid curl openssl >/dev/null
  # The packages start their system services; this bench runs its own copies.
  systemctl disable --now nginx squid >/dev/null 2>&1 || true
fi
if [ -z "${WARD_TLS_INNER:-}" ]; then
  # Re-run inside a fresh network namespace.
  exec unshare --net env WARD_TLS_INNER=1 bash "$self" "$@"
fi
ip link set lo up
ip addr add 44.1.1.1/32 dev lo
wpid= spid=
d=$(mktemp -d)
chmod 755 "$d" # nginx's and squid's workers run as other users
trap 'kill $(cat $d/nginx.pid 2>/dev/null) $wpid $spid 2>/dev/null || true; sleep 0.5; rm -rf $d' EXIT
mkdir -p "$d/www" "$d/sq" && chmod 777 "$d/sq"
head -c $((256 << 20)) /dev/zero > "$d/www/256m.bin"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/key.pem" -out "$d/cert.pem" -days 2 \
  -subj /CN=44.1.1.1 2>/dev/null
cat > "$d/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $d/nginx.pid;
error_log $d/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  server { listen 44.1.1.1:80; root $d/www; }
  server { listen 44.1.1.1:443 ssl; ssl_certificate $d/cert.pem; ssl_certificate_key $d/key.pem; root $d/www; }
}
EOF
nginx -c "$d/nginx.conf"
printf 'name = "bench"\n[network]\nallow = ["http://44.1.1.1", "https://44.1.1.1"]\n' > "$d/ward.toml"
HOME=$d XDG_STATE_HOME=$d/state XDG_CONFIG_HOME=$d/config WARD_MANAGED=$d/none.toml \
  "$ward" proxy -m "$d/ward.toml" --listen 127.0.0.1:3128 2>/dev/null &
wpid=$!
cat > "$d/sq/squid.conf" <<EOF
http_port 127.0.0.1:3129
http_access allow all
cache deny all
cache_mem 8 MB
access_log stdio:$d/sq/access.log
cache_log $d/sq/cache.log
pid_filename none
coredump_dir $d/sq
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
EOF
squid -N -f "$d/sq/squid.conf" >/dev/null 2>&1 &
spid=$!
for p in 3128 3129; do
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break
    sleep 0.1
  done
done
# MB/s of one whole download, or 0 (said on stderr) when it failed or came short.
speed() {
  local r
  r=$(curl -skf --max-time 120 "$@" -o /dev/null -w '%{size_download} %{speed_download}') || true
  if [ "${r%% *}" != $((256 << 20)) ]; then
    echo "proxy-tls: curl $* failed or came short (${r:-no answer})" >&2
    echo 0
  else
    echo "${r#* }"
  fi
}
declare -A best
for _ in $(seq "$ROUNDS"); do
  for scheme in https http; do
    for via in direct ward squid; do
      case $via in
        direct) s=$(speed "$scheme://44.1.1.1/256m.bin") ;;
        ward) s=$(speed -x http://127.0.0.1:3128 "$scheme://44.1.1.1/256m.bin") ;;
        squid) s=$(speed -x http://127.0.0.1:3129 "$scheme://44.1.1.1/256m.bin") ;;
      esac
      k="$scheme-$via"
      if [ -z "${best[$k]:-}" ] || [ "${s%.*}" -gt "${best[$k]%.*}" ]; then best[$k]=$s; fi
    done
  done
done
echo "proxy-tls: 256 MiB with curl from nginx, best of $ROUNDS, MB/s"
echo "| transfer | direct | ward | squid | ward/direct | squid/direct |"
echo "|---|---|---|---|---|---|"
for scheme in https http; do
  awk -v l="$scheme" -v d="${best[$scheme-direct]}" -v w="${best[$scheme-ward]}" -v s="${best[$scheme-squid]}" \
    'BEGIN { t = (l == "https") ? "HTTPS through CONNECT" : "HTTP proxy request";
      r = (d > 0) ? sprintf("%.2fx | %.2fx", w/d, s/d) : "- | -";
      printf "| %s | %.0f | %.0f | %.0f | %s |\n", t, d/1e6, w/1e6, s/1e6, r }'
done
