#!/bin/sh
# The app of the Vault database pod (busybox only): every 0.5 s it logs in to
# PostgreSQL with whatever $DIR/username and $DIR/password hold, speaking the
# wire protocol with nc (StartupMessage, then the password for the server's
# cleartext request, then Terminate), and prints one line per attempt:
#   login ok <username>
#   login FAIL <username>: <the server's error message>
# never the password. $PGHOST, $PGPORT, $DIR.
be32() { # a number as four big-endian bytes, for printf %b
  printf '\\%03o\\%03o\\%03o\\%03o' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255))
}
login() { # user password: the server's reply in $reply
  u=$1 p=$2 reply=${TMPDIR:-/tmp}/pg-reply
  {
    printf '%b' "$(be32 $((4 + 4 + 5 + ${#u} + 1 + 9 + 9 + 1)))\\000\\003\\000\\000"
    printf 'user\000%s\000database\000postgres\000\000' "$u"
    printf 'p%b%s\000' "$(be32 $((4 + ${#p} + 1)))" "$p"
    printf 'X\000\000\000\004'
  } | nc -w 3 "$PGHOST" "$PGPORT" >"$reply" 2>&1
}
trap 'exit 0' TERM INT
while :; do
  u=$(cat "$DIR/username" 2>/dev/null) p=$(cat "$DIR/password" 2>/dev/null)
  login "$u" "$p"
  # AuthenticationOk: 'R', length 8, code 0.
  case $(od -An -tx1 "$reply" | tr -d ' \n') in
  *520000000800000000*) echo "login ok $u" ;;
  *) echo "login FAIL $u: $(tr -c 'a-zA-Z0-9"._:-' ' ' <"$reply" | sed 's/  */ /g')" ;;
  esac
  sleep 0.5 &
  wait $!
done
