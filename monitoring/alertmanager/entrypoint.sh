#!/bin/sh
# Renders the Alertmanager configuration from the environment, then runs Alertmanager.
#
# CONTRACT (docker-compose.yml, service `alertmanager`, image prom/alertmanager: busybox sh):
#   entrypoint: ["/bin/sh", "/etc/alertmanager/entrypoint.sh"]
#   volumes:    ./monitoring/alertmanager:/etc/alertmanager:ro   (this script + the template)
#   command:    optional; extra Alertmanager flags, passed through. Without any, the script
#               adds --storage.path=/alertmanager (the image's own default command is dropped
#               when compose sets `entrypoint`). Never pass --config.file: the script does.
#   environment (all optional, empty = unset):
#     ALERT_SLACK_WEBHOOK_URL  secret; set = Slack receiver on (http(s):// URL)
#     ALERT_EMAIL_TO           email receiver: recipient(s), comma-separated
#     ALERT_SMTP_FROM          email receiver: sender address
#     ALERT_SMTP_SMARTHOST     email receiver: host:port of the SMTP server (STARTTLS required)
#     ALERT_SMTP_PASSWORD      secret; set = SMTP AUTH with user ALERT_SMTP_USERNAME
#     ALERT_SMTP_USERNAME      SMTP AUTH user (default: the address in ALERT_SMTP_FROM)
#   Setting any email variable (including the password) makes ALERT_EMAIL_TO,
#   ALERT_SMTP_FROM and ALERT_SMTP_SMARTHOST required: a missing one is an error (exit 2),
#   never a silently disabled receiver. Setting none of Slack and email starts Alertmanager
#   without notifications (alerts visible in its UI only) and says so on stderr.
#   Routing: critical -> email + Slack; warning -> Slack, or email when Slack is not set.
#
# Output, all in ALERTMANAGER_RENDER_DIR (default /tmp/alertmanager, created with mode 0700):
#   alertmanager.yml    the rendered configuration (no secrets in it)
#   slack_webhook_url   the Slack webhook URL, mode 0600 (only when set)
#   smtp_password       the SMTP password, mode 0600 (only when set)
# Then: exec ${ALERTMANAGER_BIN:-alertmanager} --config.file=<dir>/alertmanager.yml "$@".
#
# For tests and checks: `sh entrypoint.sh --render-only` (or ALERTMANAGER_RENDER_ONLY=1)
# renders, prints the rendered file's path and exits 0; ALERTMANAGER_TEMPLATE overrides the
# template path (default: alertmanager.yml beside this script).
set -eu

die() {
    printf 'alertmanager entrypoint: error: %s\n' "$*" >&2
    exit 2
}

NL='
'
CR=$(printf '\r')

# A value that goes into the YAML (inside double quotes, through sed): no quote, backslash
# or line break can reach it.
check_plain() {
    case "$2" in
        *'"'* | *'\'* | *"$NL"* | *"$CR"*)
            die "$1 must not contain quotes, backslashes or line breaks" ;;
    esac
}

# Escape a value for the replacement part of a sed s|||: the delimiter and &.
sed_value() {
    printf '%s' "$1" | sed -e 's/[|&]/\\&/g'
}

# A sed command that switches on (1) or drops (0) the lines of one marker.
marker() {
    if [ "$2" = 1 ]; then
        printf 's/^#@%s //' "$1"
    else
        printf '/^#@%s /d' "$1"
    fi
}

render_only=${ALERTMANAGER_RENDER_ONLY:-0}
if [ "${1:-}" = "--render-only" ]; then
    render_only=1
    shift
fi

script_dir=$(cd "$(dirname "$0")" && pwd)
template=${ALERTMANAGER_TEMPLATE:-$script_dir/alertmanager.yml}
render_dir=${ALERTMANAGER_RENDER_DIR:-/tmp/alertmanager}
[ -r "$template" ] || die "template $template is not readable"
check_plain ALERTMANAGER_RENDER_DIR "$render_dir"

slack_url=${ALERT_SLACK_WEBHOOK_URL:-}
email_to=${ALERT_EMAIL_TO:-}
smtp_from=${ALERT_SMTP_FROM:-}
smarthost=${ALERT_SMTP_SMARTHOST:-}
smtp_password=${ALERT_SMTP_PASSWORD:-}
# Default SMTP user: the address of the sender ("Alerts <a@example.com>" -> a@example.com).
smtp_username=${ALERT_SMTP_USERNAME:-}
if [ -z "$smtp_username" ]; then
    smtp_username=$(printf '%s' "$smtp_from" | sed -e 's/^.*<\([^>]*\)>.*$/\1/')
fi

slack=0
if [ -n "$slack_url" ]; then
    case "$slack_url" in
        https://* | http://*) ;;
        *) die "ALERT_SLACK_WEBHOOK_URL must be an http(s):// URL" ;;
    esac
    case "$slack_url" in
        *"$NL"* | *"$CR"*) die "ALERT_SLACK_WEBHOOK_URL must be one line" ;;
    esac
    slack=1
fi

email=0
if [ -n "$email_to$smtp_from$smarthost$smtp_password${ALERT_SMTP_USERNAME:-}" ]; then
    missing=""
    [ -n "$email_to" ] || missing="$missing ALERT_EMAIL_TO"
    [ -n "$smtp_from" ] || missing="$missing ALERT_SMTP_FROM"
    [ -n "$smarthost" ] || missing="$missing ALERT_SMTP_SMARTHOST"
    if [ -n "$missing" ]; then
        die "email alerts need ALERT_EMAIL_TO, ALERT_SMTP_FROM and ALERT_SMTP_SMARTHOST; missing:$missing (unset every ALERT_SMTP_*/ALERT_EMAIL_TO variable to disable email)"
    fi
    check_plain ALERT_EMAIL_TO "$email_to"
    check_plain ALERT_SMTP_FROM "$smtp_from"
    check_plain ALERT_SMTP_USERNAME "$smtp_username"
    check_plain ALERT_SMTP_SMARTHOST "$smarthost"
    case "$smarthost" in
        *:*[!0-9]* | *: | *:*:*) die "ALERT_SMTP_SMARTHOST must be host:port, got '$smarthost'" ;;
        ?*:[0-9]*) ;;
        *) die "ALERT_SMTP_SMARTHOST must be host:port, got '$smarthost'" ;;
    esac
    case "$smtp_password" in
        *"$NL"* | *"$CR"*) die "ALERT_SMTP_PASSWORD must be one line" ;;
    esac
    email=1
fi
smtpauth=0
[ "$email" = 1 ] && [ -n "$smtp_password" ] && smtpauth=1
warnemail=0
[ "$email" = 1 ] && [ "$slack" = 0 ] && warnemail=1

if [ "$slack$email" = 00 ]; then
    printf '%s\n' "alertmanager entrypoint: warning: neither ALERT_SLACK_WEBHOOK_URL nor ALERT_EMAIL_TO/ALERT_SMTP_* is set: alerts are only shown in the Alertmanager UI" >&2
fi

mkdir -p "$render_dir" || die "cannot create $render_dir"
chmod 700 "$render_dir" || die "cannot restrict $render_dir to its owner"

# Secrets: written with umask 077 and chmod 600 (also when the file existed before);
# a secret that is no longer set is removed.
write_secret() {
    rm -f "$render_dir/$1"
    (umask 077 && printf '%s' "$2" > "$render_dir/$1") || die "cannot write $render_dir/$1"
    chmod 600 "$render_dir/$1"
}
if [ "$slack" = 1 ]; then
    write_secret slack_webhook_url "$slack_url"
else
    rm -f "$render_dir/slack_webhook_url"
fi
if [ "$smtpauth" = 1 ]; then
    write_secret smtp_password "$smtp_password"
else
    rm -f "$render_dir/smtp_password"
fi

config=$render_dir/alertmanager.yml
(umask 077 && sed \
    -e "$(marker email "$email")" \
    -e "$(marker smtpauth "$smtpauth")" \
    -e "$(marker slack "$slack")" \
    -e "$(marker warnemail "$warnemail")" \
    -e "s|@ALERT_EMAIL_TO@|$(sed_value "$email_to")|g" \
    -e "s|@ALERT_SMTP_FROM@|$(sed_value "$smtp_from")|g" \
    -e "s|@ALERT_SMTP_USERNAME@|$(sed_value "$smtp_username")|g" \
    -e "s|@ALERT_SMTP_SMARTHOST@|$(sed_value "$smarthost")|g" \
    -e "s|@RENDER_DIR@|$(sed_value "$render_dir")|g" \
    "$template" > "$config.tmp") || die "cannot render $config"
mv -f "$config.tmp" "$config"

if [ "$render_only" = 1 ]; then
    printf '%s\n' "$config"
    exit 0
fi

if [ "$#" -eq 0 ]; then
    set -- --storage.path=/alertmanager
fi
exec "${ALERTMANAGER_BIN:-alertmanager}" --config.file="$config" "$@"
