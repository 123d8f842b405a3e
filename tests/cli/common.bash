# Helpers shared by the CLI test scripts (tests/cli/*.sh); sourced, not run.
#
# Usage in a script:  source "$(dirname "$0")/common.bash" "$@"
# Arguments: $1 the tide binary, $2 a scratch directory (emptied first).
# The scripts read and write binary files with perl (in every Debian
# install), independently of Tide's own readers and writers.
set -u

TIDE=${1:?usage: $0 TIDE_BINARY SCRATCH_DIR}
WORK=${2:?usage: $0 TIDE_BINARY SCRATCH_DIR}
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK" || exit 1

# One thread per tide process: these tests check behaviour, not speed, and
# CTest may run several of them at once on a small machine.
export TIDE_NUM_THREADS=1

failures=0
checks=0

pass() { checks=$((checks + 1)); }
failed() {
  checks=$((checks + 1))
  failures=$((failures + 1))
  echo "FAIL: $*"
}

# run NAME CMD...: runs tide with CMD, keeping stdout/stderr in NAME.out/.err
# and the exit status in $status.
run() {
  local name=$1
  shift
  "$TIDE" "$@" >"$name.out" 2>"$name.err"
  status=$?
}

# expect_ok NAME ARGS...: tide ARGS must succeed.
expect_ok() {
  local name=$1
  shift
  run "$name" "$@"
  if [[ $status -eq 0 ]]; then
    pass
  else
    failed "$name: 'tide $*' exited with $status"
    sed 's/^/    /' "$name.out" "$name.err"
  fi
}

# expect_error NAME TEXT ARGS...: tide ARGS must fail with a non-zero status
# that is not a crash (a signal gives >= 128), and print exactly one line on
# stderr containing TEXT, and no "terminate called" / "Aborted".
expect_error() {
  local name=$1 text=$2
  shift 2
  run "$name" "$@"
  local lines
  lines=$(wc -l <"$name.err")
  if [[ $status -eq 0 ]]; then
    failed "$name: 'tide $*' succeeded; expected an error containing '$text'"
  elif [[ $status -ge 128 ]]; then
    failed "$name: 'tide $*' crashed (status $status)"
    sed 's/^/    /' "$name.err"
  elif ! grep -qF -- "$text" "$name.err"; then
    failed "$name: 'tide $*' (status $status): stderr lacks '$text':"
    sed 's/^/    /' "$name.err"
  elif [[ $lines -ne 1 ]]; then
    failed "$name: 'tide $*': expected a one-line error, got $lines lines:"
    sed 's/^/    /' "$name.err"
  else
    pass
  fi
}

# expect_status NAME CODE: the last run's status must be CODE.
expect_status() {
  if [[ $status -eq $2 ]]; then pass; else failed "$1: exit status $status, expected $2"; fi
}

# check NAME CONDITION-COMMAND...: records a pass if the command succeeds.
check() {
  local name=$1
  shift
  if "$@"; then pass; else failed "$name: '$*' failed"; fi
}

# contains NAME FILE TEXT
contains() {
  if grep -qF -- "$3" "$2"; then
    pass
  else
    failed "$1: $2 lacks '$3':"
    sed 's/^/    /' "$2"
  fi
}

# write_npy FILE DESCR SHAPE VALUES...: a version 1.0 .npy file; DESCR is <f4
# or <f8, SHAPE a Python tuple such as "(2, 2)".
write_npy() {
  perl -e '
    my ($path, $descr, $shape, @v) = @ARGV;
    my $h = "{\x27descr\x27: \x27$descr\x27, \x27fortran_order\x27: False, \x27shape\x27: $shape, }";
    my $total = 10 + length($h) + 1;
    $h .= " " x ((64 - $total % 64) % 64) . "\n";
    open(my $f, ">:raw", $path) or die;
    print $f "\x93NUMPY\x01\x00" . pack("v", length $h) . $h
      . pack(($descr eq "<f8" ? "d<" : "f<") . "*", @v);' "$@"
}

# npy_shape FILE: prints the shape tuple's contents, e.g. "50, 2".
# npy_values FILE: prints the values, one per line.
npy_read() {
  perl -e '
    my ($mode, $path) = @ARGV;
    open(my $f, "<:raw", $path) or die "cannot open $path\n";
    local $/; my $b = <$f>;
    die "$path: not a .npy file\n" unless substr($b, 0, 6) eq "\x93NUMPY";
    my ($hl, $off) = ord(substr($b, 6, 1)) == 1
      ? (unpack("v", substr($b, 8, 2)), 10) : (unpack("V", substr($b, 8, 4)), 12);
    my $h = substr($b, $off, $hl);
    my ($descr) = $h =~ /\x27descr\x27:\s*\x27([^\x27]+)\x27/;
    my ($shape) = $h =~ /\x27shape\x27:\s*\(([^)]*)\)/;
    $shape =~ s/,\s*$//;
    if ($mode eq "shape") { print "$shape\n"; exit 0; }
    if ($mode eq "descr") { print "$descr\n"; exit 0; }
    my $fmt = $descr eq "<f4" ? "f<" : $descr eq "<f8" ? "d<" : die "dtype $descr\n";
    print join("\n", unpack("$fmt*", substr($b, $off + $hl))), "\n";' "$@"
}
npy_shape() { npy_read shape "$1"; }
npy_descr() { npy_read descr "$1"; }
npy_values() { npy_read values "$1"; }

# png_size FILE: "WIDTHxHEIGHT" from a PNG's signature and IHDR chunk, or
# "not a png".
png_size() {
  perl -e '
    open(my $f, "<:raw", $ARGV[0]) or die; read($f, my $b, 24);
    if (substr($b, 0, 8) ne "\x89PNG\r\n\x1a\n" || substr($b, 12, 4) ne "IHDR") {
      print "not a png\n"; exit 0; }
    my ($w, $h) = unpack("NN", substr($b, 16, 8)); print "${w}x${h}\n";' "$1"
}

# close_to NAME ACTUAL EXPECTED TOL: |actual - expected| <= tol.
close_to() {
  if awk -v a="$2" -v e="$3" -v t="$4" 'BEGIN { d = a - e; if (d < 0) d = -d; exit !(d <= t) }'; then
    pass
  else
    failed "$1: got $2, expected $3 (tolerance $4)"
  fi
}

finish() {
  echo "$checks checks, $failures failures"
  [[ $failures -eq 0 ]]
  exit $?
}
