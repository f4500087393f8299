# shellcheck shell=bash
# Shared helpers for compat-tests/run, compat-tests/clients and test.sh.
# Source it; it does not change shell options.

# Print to stderr.
say() { printf '%s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 2
}

# is_installed PKG: true when dpkg reports PKG as installed.
is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# ensure_packages PKG...: apt-get install the packages that are missing.
# Runs `apt-get update` first, but only when something must be installed.
# Does nothing on systems without dpkg/apt-get (prints a warning).
ensure_packages() {
    local missing=() p
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        say "warning: no dpkg/apt-get here; not checking for packages: $*"
        return 0
    fi
    for p in "$@"; do
        is_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing packages (${missing[*]}) and not root"
        sudo=(sudo -n)
    fi
    say "installing missing packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
        die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# resolve_daemon PATH-OR-NAME: print an absolute path to an executable, or fail.
resolve_daemon() {
    local d=$1 r
    if [[ $d != */* ]]; then
        r=$(command -v "$d" 2>/dev/null) || die "daemon '$d' not found in PATH"
        d=$r
    fi
    [[ -e $d ]] || die "daemon '$d' does not exist (build it first: cargo build --release)"
    [[ -x $d && -f $d ]] || die "daemon '$d' is not an executable file"
    # Absolute path: the tests run in a fresh temporary cwd.
    (cd "$(dirname "$d")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$d")")
}

# Expected-failure lists. Format, one entry per line:
#     <first-field> <pattern>   # reason / issue #N
# or, for one-field lists (clients), just `<pattern>  # reason`.
# Everything after the first '#' is a comment; blank lines are ignored.
# Patterns are bash globs: `*` alone matches every case.
XF_KEYS=()    # "<field1>\t<pattern>" (or "\t<pattern>" for one-field lists)
XF_LINES=()   # original line numbers
XF_HITS=()    # number of cases matched so far

# load_expected FILE NFIELDS(1|2)
load_expected() {
    local file=$1 nf=$2 line n=0 first rest
    XF_KEYS=() XF_LINES=() XF_HITS=()
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=${line%%#*}
        line=${line%"${line##*[![:space:]]}"}   # rtrim
        line=${line#"${line%%[![:space:]]*}"}   # ltrim
        [[ -n $line ]] || continue
        if [[ $nf == 2 ]]; then
            first=${line%%[[:space:]]*}
            rest=${line#"$first"}
            rest=${rest#"${rest%%[![:space:]]*}"}
            [[ -n $rest ]] || die "$file:$n: expected '<test-binary> <case-path>' (use '*' for all cases)"
        else
            first="" rest=$line
        fi
        XF_KEYS+=("$first"$'\t'"$rest")
        XF_LINES+=("$n")
        XF_HITS+=(0)
    done <"$file"
}

# is_expected FIELD1 CASE: true if some entry matches; counts the hit.
is_expected() {
    local f1=$1 c=$2 i k pat
    for i in "${!XF_KEYS[@]}"; do
        k=${XF_KEYS[$i]}
        [[ ${k%%$'\t'*} == "$f1" ]] || continue
        pat=${k#*$'\t'}
        # shellcheck disable=SC2053 # the pattern is a glob on purpose
        if [[ $c == $pat ]]; then
            XF_HITS[i]=$((XF_HITS[i] + 1))
            return 0
        fi
    done
    return 1
}

# report_stale_expected FILE [RAN...]: note entries that matched no case at
# all (typos, or cases that no longer exist). With RAN given, only entries
# whose first field is one of RAN are considered.
report_stale_expected() {
    local file=$1 i k f1
    shift
    for i in "${!XF_KEYS[@]}"; do
        ((XF_HITS[i] == 0)) || continue
        k=${XF_KEYS[$i]}
        f1=${k%%$'\t'*}
        if (($#)) && [[ " $* " != *" $f1 "* ]]; then continue; fi
        printf 'note: %s:%s: entry "%s" matched no case that ran\n' \
            "$file" "${XF_LINES[$i]}" "${f1:+$f1 }${k#*$'\t'}"
    done
}
