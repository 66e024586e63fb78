#!/bin/sh
# Chooses the site at nginx's start (the official image runs /docker-entrypoint.d/*.sh before
# nginx; docker-compose.yml mounts this file there): HTTPS for HTTPS_DOMAIN once its
# certificate exists, HTTP (with Let's Encrypt's challenges answered) until then or without
# HTTPS_DOMAIN. In the background it then watches the certificate: when certbot renews it (or
# first obtains it), the site is chosen again and nginx reloaded.
#   --select-only   choose and write the site, nothing else (make deploy, tests)
# Paths and the reload command (a shell command) can be changed for tests (deploy/test-nginx.sh).
set -eu
conf_dir=${AGENT_PLATFORM_CONF:-/etc/nginx/agent-platform}
site_file=${AGENT_PLATFORM_SITE:-/etc/nginx/conf.d/agent-platform-site.conf}
letsencrypt=${LETSENCRYPT_DIR:-/etc/letsencrypt}
reload=${NGINX_RELOAD:-nginx -c $conf_dir/nginx.conf -s reload}
interval=${CERTIFICATE_CHECK_INTERVAL:-600}
domain=${HTTPS_DOMAIN:-}
me="40-agent-platform.sh"

case "$domain" in
  *[!A-Za-z0-9.-]*) echo "$me: HTTPS_DOMAIN '$domain' is not a DNS name" >&2; exit 1 ;;
esac
certificate="$letsencrypt/live/$domain/fullchain.pem"

select_site() {
  mkdir -p "$(dirname "$site_file")"
  if [ -z "$domain" ]; then
    cp "$conf_dir/site-http.conf" "$site_file.new"
    echo "$me: HTTP only (HTTPS_DOMAIN is empty)"
  elif [ -s "$certificate" ] && [ -s "$letsencrypt/live/$domain/privkey.pem" ]; then
    sed "s/__HTTPS_DOMAIN__/$domain/g" "$conf_dir/site-https.conf" >"$site_file.new"
    echo "$me: HTTPS for $domain, HTTP redirected"
  else
    cp "$conf_dir/site-http.conf" "$site_file.new"
    echo "$me: no certificate for $domain yet: HTTP until make deploy obtains one" >&2
  fi
  mv -f "$site_file.new" "$site_file"
}

# The certificate's (modified time, size, inode): certbot links live/ to a new file each time.
stamp() { stat -L -c '%Y %s %i' "$certificate" 2>/dev/null || true; }

select_site
[ "${1:-}" = "--select-only" ] && exit 0
[ -z "$domain" ] && exit 0

# Renewals replace the certificate; nginx keeps the old one until it reloads.
(
  seen=$(stamp)
  while sleep "$interval"; do
    now=$(stamp)
    if [ "$now" != "$seen" ]; then
      seen=$now
      echo "$me: the certificate for $domain changed: reloading nginx"
      select_site && sh -c "$reload" || echo "$me: reload failed" >&2
    fi
  done
) </dev/null &
