# nginx-conf.sh - sourced by the benchmarks: the nginx config they run nginx with, as the
# upstream (`return 200`) and as the proxy compared with the sidecar.
#
# nginx_conf DIR LISTEN-PORT LOCATION-BODY [HTTP-EXTRA]: one worker, no access log, temp files
# and pid under DIR, kept-alive client connections, listening on $HOST:LISTEN-PORT with
# LOCATION-BODY for every path; HTTP-EXTRA goes into the http block (an `upstream`, say).
nginx_conf() {
  cat <<CONF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body; proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fcgi; uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  ${4:-}
  server {
    listen $HOST:$2 backlog=4096;
    location / { $3 }
  }
}
CONF
}
