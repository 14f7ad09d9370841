#!/bin/sh
# Print the Debian archive this machine's apt already uses (its own sources, deb822 or one-line
# form), so debootstrap fetches from the same place apt does and no mirror address is written into
# the project. Prints nothing when none is configured: debootstrap then uses its built-in default.
set -eu
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: the URIs of a stanza whose Suites name a release and whose URI ends in /debian
    awk 'BEGIN{RS=""; FS="\n"}
         /(^|\n)Types:[^\n]*deb([ \n]|$)/ {
           for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) {
             n = split(substr($i, 6), u, " ")
             for (j = 1; j <= n; j++) if (u[j] ~ /\/debian\/?$/) { print u[j]; exit }
           }
         }' "$f" | head -n 1 | grep . && exit 0
done
if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /\/debian\/?$/) { print $i; exit } }' \
        /etc/apt/sources.list | head -n 1 | grep . && exit 0
fi
exit 0
