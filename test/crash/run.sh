#!/usr/bin/env bash
# Does the `crash` utility open Vicover's dumps of real crashed guests?
#
#   test/crash/run.sh [--keep] [IMAGE…]          (default images: small4 mixed5; needs `npm run build`)
#
# For each image set (test/guest/images.mjs, built or reused) and each output format (kdump raw,
# kdump zlib, ELF; all at -d 31), `vicover dump ram.img` writes a dump and
# `crash -s VMLINUX DUMP` runs, in batch mode: sys, bt, log, ps, kmem -i, and a walk of the task list.
# The same commands run on makedumpfile's own -d 31 file of the same crash (md31.kdump), the reference.
# A dump passes when
#   sys      shows PANIC: "Kernel panic - not syncing: sysrq triggered crash"
#   bt       goes through sysrq_handle_crash
#   log      holds the panic line
#   ps       lists tasks (PID table header and the panicking task, marked ">")
#   kmem -i  reports TOTAL MEM and FREE
#   tasks    the task list (init_task.tasks) holds as many tasks as on the reference
#   clean    no "page excluded", read/seek error or "invalid … address" anywhere, and no warning or
#            error line that crash does not also print for the reference
#   same     (kdump) crash's whole output equals the reference's, apart from the DUMPFILE line
# The guest kernel's debug vmlinux comes from Debian's linux-image-<version>-dbg (~860 MB download,
# 630 MB vmlinux): `apt-get download`, then only usr/lib/debug/boot/vmlinux-* is extracted, cached in
# ${VICOVER_CACHE:-~/.cache/vicover}/kernel/<version>/dbg/ (the .deb is deleted), and its build ID is
# checked against the guest's.
#
# Prints a summary table; exits 0 when every check passed, 1 when one failed, 2 on set-up errors.
# Environment: VICOVER_CACHE, VICOVER_CRASH_FORMATS (default "raw zlib elf"), VICOVER_CRASH_OUT (work
# directory; default a temporary one, removed unless --keep), VICOVER_CRASH_SUMMARY (also write the
# summary as JSON lines to this file).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${VICOVER_CACHE:-$HOME/.cache/vicover}
formats=${VICOVER_CRASH_FORMATS:-raw zlib elf}
keep=0
images=()
for a in "$@"; do
  case $a in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $a" >&2; exit 2 ;;
    *) images+=("$a") ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=(small4 mixed5)

die() { echo "run.sh: $*" >&2; exit 2; }
for t in crash node apt-get dpkg-deb tar readelf flock; do command -v "$t" >/dev/null || die "$t is not installed"; done
[ -f "$root/packages/cli/dist/bin.js" ] || die "the CLI is not built: run npm run build"
vicover() { node "$root/packages/cli/bin/vicover.js" "$@"; }

work=${VICOVER_CRASH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vcv-crash-XXXXXX")}
mkdir -p "$work" || die "cannot create $work"
cleanup() { [ "$keep" = 1 ] || [ -n "${VICOVER_CRASH_OUT:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
summary_json=${VICOVER_CRASH_SUMMARY:-}
[ -z "$summary_json" ] || : > "$summary_json"

# --- the debug vmlinux of a kernel version (cached) ---------------------------------------------
vmlinux_for() { # version build-id → path on stdout
  local ver=$1 want_id=$2 dir="$cache/kernel/$1/dbg"
  local vml="$dir/vmlinux-$ver"
  mkdir -p "$dir" || return 1
  (
    flock 9
    if [ ! -s "$vml" ]; then
      echo "run.sh: fetching linux-image-$ver-dbg (~860 MB) into $dir" >&2
      local tmp; tmp=$(mktemp -d "$dir/dl.XXXXXX") || exit 1
      (cd "$tmp" && apt-get download "linux-image-$ver-dbg" >&2) || { rm -rf "$tmp"; exit 1; }
      (cd "$tmp" && dpkg-deb --fsys-tarfile ./*.deb | tar -x --wildcards '*/vmlinux-*') || { rm -rf "$tmp"; exit 1; }
      local f; f=$(find "$tmp" -type f -path "*/boot/vmlinux-$ver" | head -1)
      [ -n "$f" ] || { echo "run.sh: no vmlinux-$ver in the package" >&2; rm -rf "$tmp"; exit 1; }
      mv "$f" "$vml.part" && mv "$vml.part" "$vml"
      rm -rf "$tmp"
    fi
  ) 9>"$dir/.lock" || return 1
  local id; id=$(readelf -n "$vml" 2>/dev/null | awk '/Build ID/ {print $3; exit}')
  if [ -n "$want_id" ] && [ "$id" != "$want_id" ]; then
    echo "run.sh: $vml has build ID $id, the guest kernel $want_id" >&2
    return 1
  fi
  echo "$vml"
}

# --- crash in batch mode ------------------------------------------------------------------------
cat > "$work/commands" <<'EOF'
sys
bt
log
ps
kmem -i
list task_struct.tasks -h init_task
quit
EOF
run_crash() { # vmlinux dump out
  timeout 900 crash -s "$1" "$2" -i "$work/commands" < /dev/null > "$3" 2>&1
}
# crash's own complaints (kernel log lines start with "[" and are not looked at): these mean a damaged
# or over-filtered dump and fail the "clean" check outright.
bad_re='^(crash: )?(page excluded|read error|seek error|invalid (kernel|user) virtual address)'
# Other warnings and errors of crash: allowed only when it prints them for the reference too.
warn_re='WARNING|warning|error|cannot|failed|invalid'
complaints() { grep -v '^\[' "$1" | grep -E "$2" | sort -u; }
tasks_in() { grep -cE '^[0-9a-f]{16}$' "$1"; }

panic='Kernel panic - not syncing: sysrq triggered crash'
declare -a rows
fail=0

check() { # image fmt out ref → fills result vars, prints nothing
  local out=$1 ref=$2 fmt=$3 ok
  r_sys=FAIL; grep -q "PANIC: \"$panic\"" "$out" && r_sys=ok
  r_bt=FAIL; grep -Eq '^ ?#[0-9]+ .* sysrq_handle_crash at ' "$out" && r_bt=ok
  r_log=FAIL; grep -Eq "^\[ *[0-9.]+\] $panic" "$out" && r_log=ok
  r_ps=FAIL; grep -Eq '^ +PID +PPID +CPU +TASK +ST' "$out" && grep -Eq '^> +[0-9]+ ' "$out" && r_ps=ok
  r_kmem=FAIL; grep -Eq '^ +TOTAL MEM +[0-9]+' "$out" && grep -Eq '^ +FREE +[0-9]+' "$out" && r_kmem=ok
  local nt nr; nt=$(tasks_in "$out"); nr=$(tasks_in "$ref")
  r_tasks="FAIL($nt/$nr)"; [ "$nt" -gt 1 ] && [ "$nt" = "$nr" ] && r_tasks="ok($nt)"
  r_clean=ok
  if [ -n "$(complaints "$out" "$bad_re")" ]; then r_clean=FAIL
  else
    local extra
    extra=$(comm -23 <(complaints "$out" "$warn_re") <(complaints "$ref" "$warn_re"))
    [ -z "$extra" ] || r_clean=FAIL
  fi
  r_same=-
  if [ "$fmt" != elf ]; then
    r_same=FAIL
    diff -q <(grep -v '^ *DUMPFILE:' "$out") <(grep -v '^ *DUMPFILE:' "$ref") >/dev/null && r_same=ok
  fi
}

echo "$(crash --version 2>/dev/null | grep -m1 "^crash"), makedumpfile reference: md31.kdump of each image set"
for name in "${images[@]}"; do
  dir=$(cd "$root" && node test/guest/images.mjs "$name" | awk -v n="$name" '$1 == n {print $2}')
  [ -n "$dir" ] && [ -f "$dir/meta.json" ] || die "image set $name is not available"
  ver=$(node -e 'const m=require(process.argv[1]); console.log(m.kernel.version)' "$dir/meta.json")
  bid=$(node -e 'const m=require(process.argv[1]); console.log(m.kernel.buildId || "")' "$dir/meta.json")
  vml=$(vmlinux_for "$ver" "$bid") || die "no debug vmlinux for $ver"
  ref="$work/$name-md31.crash"
  run_crash "$vml" "$dir/md31.kdump" "$ref" || die "crash failed on makedumpfile's own dump $dir/md31.kdump (see $ref)"
  for fmt in $formats; do
    case $fmt in
      raw) args=(-d 31); ext=kdump ;;
      zlib) args=(-d 31 --compress zlib); ext=kdump ;;
      snappy) args=(-d 31 --compress snappy); ext=kdump ;;
      elf) args=(-d 31 --format elf); ext=elf ;;
      *) die "unknown format $fmt" ;;
    esac
    dump="$work/$name-$fmt.$ext"
    rm -f "$dump"
    if ! vicover dump "$dir/ram.img" -o "$dump" "${args[@]}" --json > "$work/$name-$fmt.json" 2> "$work/$name-$fmt.err"; then
      rows+=("$name $fmt dump-failed")
      fail=1
      [ -z "$summary_json" ] || echo "{\"image\":\"$name\",\"format\":\"$fmt\",\"pass\":false,\"error\":\"vicover dump failed\"}" >> "$summary_json"
      continue
    fi
    out="$work/$name-$fmt.crash"
    t0=$(date +%s%N)
    run_crash "$vml" "$dump" "$out"; rc=$?
    secs=$(( ($(date +%s%N) - t0) / 1000000 ))e-3
    check "$out" "$ref" "$fmt"
    pass=true
    for r in "$r_sys" "$r_bt" "$r_log" "$r_ps" "$r_kmem" "$r_tasks" "$r_clean" "$r_same"; do case $r in ok*|-) ;; *) pass=false ;; esac; done
    [ "$rc" = 0 ] || pass=false
    [ "$pass" = true ] || fail=1
    rows+=("$name $fmt $r_sys $r_bt $r_log $r_ps $r_kmem $r_tasks $r_clean $r_same $(printf %.1f "$secs")s $([ "$pass" = true ] && echo PASS || echo "FAIL(see $out)")")
    [ -z "$summary_json" ] || printf '{"image":"%s","format":"%s","pass":%s,"sys":"%s","bt":"%s","log":"%s","ps":"%s","kmem":"%s","tasks":"%s","clean":"%s","same":"%s","crashExit":%s,"seconds":%s}\n' \
      "$name" "$fmt" "$pass" "$r_sys" "$r_bt" "$r_log" "$r_ps" "$r_kmem" "$r_tasks" "$r_clean" "$r_same" "$rc" "$(printf %.1f "$secs")" >> "$summary_json"
  done
done

echo
{
  echo "image format sys bt log ps kmem-i tasks clean same-as-makedumpfile crash-time result"
  for r in "${rows[@]}"; do echo "$r"; done
} | column -t
echo
# What crash itself warns about on makedumpfile's own file (shown for context, not a failure).
for name in "${images[@]}"; do
  w=$(complaints "$work/$name-md31.crash" "$warn_re" 2>/dev/null | head -3)
  [ -z "$w" ] || echo "note: crash also prints on makedumpfile's own $name dump: $w"
done
[ "$keep" = 1 ] && echo "outputs kept in $work"
if [ "$fail" = 0 ]; then echo "crash check: PASS (${images[*]}; formats: $formats)"; else echo "crash check: FAIL"; fi
exit $fail
