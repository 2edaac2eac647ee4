#!/bin/sh
# tests/layers.sh: the byte path runs one way (issue 12), checked on the
# sources and on the objects `make` built (build/*.o); one test.
#  - port.c, tls.c, rfc2217.c, telnet.c and the headers they include
#    reach no Lua header, nor host.h, lport.h or lchat.h;
#  - chat.c, pattern.c and redact.c reach neither Lua nor libuv;
#  - their objects call nothing of Lua nor of the binding (lua_*,
#    luaL_*, ath_lport_*, ath_lopen_*, ath_host_wake/dispatch);
#  - core.c (what a host is to the byte path) calls nothing of Lua;
#  - no circle of calls among all of host/'s files: each calls down only
#    (station > host > lhost > the Lua modules > lchat > port > flow >
#    chat > transcript > event > core > redact, as tsort orders them).
# Prints "N passed, N failed" like every suite.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
bad=

# reach FILE: every local header FILE includes, transitively
reach() {
    seen=" "
    todo=$1
    while [ -n "$todo" ]; do
        set -- $todo
        f=$1
        shift
        todo=$*
        case "$seen" in *" $f "*) continue ;; esac
        seen="$seen$f "
        for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]\([^">]*\)[">].*/\1/p' "host/$f"); do
            echo "$inc"
            [ -f "host/$inc" ] && todo="$todo $inc"
        done
    done | sort -u
}

for f in port.c tls.c rfc2217.c telnet.c; do
    for inc in $(reach "$f"); do
        case "$inc" in
        lua.h | lauxlib.h | lualib.h | luaconf.h | host.h | lport.h | lchat.h)
            bad="$bad
host/$f reaches $inc" ;;
        esac
    done
done
for f in chat.c pattern.c redact.c; do
    for inc in $(reach "$f"); do
        case "$inc" in
        lua.h | lauxlib.h | lualib.h | luaconf.h | uv.h | host.h | core.h | lport.h | lchat.h)
            bad="$bad
host/$f reaches $inc" ;;
        esac
    done
done

objs=$(for f in host/*.c; do basename "$f" .c; done)
for o in $objs; do
    [ -f "$BUILD/$o.o" ] || bad="$bad
$BUILD/$o.o is missing (run make first)"
done
if [ -z "$bad" ]; then
    for o in port tls rfc2217 telnet chat pattern redact core; do
        calls=$(nm -u "$BUILD/$o.o" | awk '{print $2}' |
            grep -E '^(lua_|luaL_|luaopen_|ath_lport_|ath_lopen_|ath_host_wake$|ath_host_dispatch$|ath_host_spawn$)')
        [ -z "$calls" ] || bad="$bad
host/$o.c calls $(echo $calls)"
    done
    # Edges "a b": a.o calls a function b.o defines; a circle is a cycle.
    edges=$(for a in $objs; do
        nm -u "$BUILD/$a.o" | awk '{print $2}' | sort -u >"${TMPDIR:-/tmp}/layers.$$.u"
        for b in $objs; do
            [ "$a" = "$b" ] && continue
            if nm --defined-only "$BUILD/$b.o" | awk '$2 ~ /^[TDBR]$/ {print $3}' |
                sort -u | comm -12 - "${TMPDIR:-/tmp}/layers.$$.u" | grep -q .; then
                echo "$a $b"
            fi
        done
    done)
    rm -f "${TMPDIR:-/tmp}/layers.$$.u"
    # tsort reports a cycle on stderr
    cyc=$(echo "$edges" | tsort 2>&1 >/dev/null)
    [ -z "$cyc" ] || bad="$bad
a circle of calls among host/ files: $(echo $cyc | sed "s/tsort: //g")
(edges: $(echo "$edges" | tr '\n' ';'))"
fi

if [ -n "$bad" ]; then
    echo "FAIL: host/ does not call one way:$bad"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "ok: host/ calls one way, the byte path knows no Lua"
echo "1 passed, 0 failed"
