# shellcheck shell=bash disable=SC2034
# test/lib.sh - shell helpers shared by test/run, demo and the bench scripts
#
# Source it from bash:   . "$REPO/test/lib.sh"
#
# It defines (all names start with omen_ / OMEN_):
#   omen_install_deps       Debian packages needed to build and test (apt, only if missing)
#   omen_install_pgvector   make sure pgvector >= 0.7.0 is installed (apt, or ../shared/vendor)
#   omen_build              make -j2 && make install in the repo
#   omen_install_citus      make sure Citus is installed (for 007_citus.pl, bench/citus; builds ../shared/vendor)
#   omen_mktemp VAR NAME    a fresh temp dir owned by postgres (path in $VAR), removed by omen_cleanup
#   omen_cluster_start [CONF-LINE...]   throwaway cluster on a private port and socket dir
#   omen_cluster_stop       stop it and remove its directory
#   omen_psql ARGS...       psql as postgres, -X -v ON_ERROR_STOP=1, into that cluster
#   omen_as_pg CMD...       run a command as the postgres OS user (as-is when not root)
#   omen_time NAME CMD...   run CMD, record its wall time in OMEN_TIMES[NAME]
#   omen_setup_traps        stop clusters and remove temp dirs on exit/interrupt
#   omen_cleanup            the same, on demand (idempotent, silent)
#
# Settings (environment, all optional):
#   OMEN_SHARED     the shared folder (default: <repo>/../shared; may be absent)
#   OMEN_CACHE      where pgvector gets built from source (default /var/tmp/omen-cache)
#   OMEN_PG_CONFIG  pg_config of the PostgreSQL 15 to build against and test with
#                   (default /usr/lib/postgresql/15/bin/pg_config; test/cassert
#                   sets it to its assertion-enabled build)
#   OMEN_KEEP_TMP=1 keep temp dirs (logs, data dirs) after the run, for debugging
#
# PostgreSQL refuses to run as root, so every server and client process runs
# as the `postgres` OS user, in a temp dir that user owns.  Servers listen on
# no TCP address, only on a unix socket inside their temp dir, on a port that
# was free when chosen: nothing here touches any other cluster.

# ---------------------------------------------------------------- paths

OMEN_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OMEN_SHARED=${OMEN_SHARED:-$(dirname "$OMEN_REPO")/shared}
if [ -n "${OMEN_PG_CONFIG:-}" ]; then
	# another PostgreSQL 15 installation, e.g. test/cassert's
	OMEN_PGBIN=$("$OMEN_PG_CONFIG" --bindir) || { echo "error: $OMEN_PG_CONFIG --bindir failed" >&2; exit 1; }
	OMEN_PGXS_DIR=$("$OMEN_PG_CONFIG" --pgxs) || { echo "error: $OMEN_PG_CONFIG --pgxs failed" >&2; exit 1; }
	OMEN_PGXS_DIR=${OMEN_PGXS_DIR%/src/makefiles/pgxs.mk}
else
	OMEN_PGBIN=/usr/lib/postgresql/15/bin
	OMEN_PG_CONFIG=$OMEN_PGBIN/pg_config
	OMEN_PGXS_DIR=/usr/lib/postgresql/15/lib/pgxs
fi
OMEN_PG_REGRESS=$OMEN_PGXS_DIR/src/test/regress/pg_regress
OMEN_PG_ISOLATION_REGRESS=$OMEN_PGXS_DIR/src/test/isolation/pg_isolation_regress
OMEN_PERL_LIB=$OMEN_PGXS_DIR/src/test/perl
OMEN_CACHE=${OMEN_CACHE:-/var/tmp/omen-cache}
OMEN_PGVECTOR_VERSION=0.8.6
OMEN_PGVECTOR_SHA256=b4eb8abc425b465082ae5955d13df5338c32ec1bd441f0eb86d780e3958766a6
OMEN_PGVECTOR_MIN=0.7.0

# Debian's python3 (has python3-numpy); a pyenv python3 earlier in PATH may not.
if [ -x /usr/bin/python3 ]; then
	OMEN_PYTHON=/usr/bin/python3
else
	OMEN_PYTHON=python3
fi

export DEBIAN_FRONTEND=noninteractive

declare -gA OMEN_TIMES=()
declare -ga OMEN_TIME_ORDER=()
declare -ga OMEN_TEMP_DIRS=()
OMEN_APT_UPDATED=${OMEN_APT_UPDATED:-0}
OMEN_CLUSTER_DIR=${OMEN_CLUSTER_DIR:-}

# ---------------------------------------------------------------- messages

omen_log() { printf '%s\n' "$*" >&2; }
omen_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

omen_is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as the postgres OS user.  When we are not root we cannot
# switch users; then we run as ourselves (fine for a non-root developer, as
# PostgreSQL only refuses root).  OMEN_PG_CWD, if set, is the directory the
# command runs in (postgres may not be able to enter the caller's cwd).
omen_as_pg() {
	(
		if [ -n "${OMEN_PG_CWD:-}" ]; then
			cd "$OMEN_PG_CWD" || exit 1
		fi
		if omen_is_root; then
			exec runuser -u postgres -- "$@"
		else
			exec "$@"
		fi
	)
}

# ---------------------------------------------------------------- dependencies

omen_apt_update_once() {
	if [ "$OMEN_APT_UPDATED" != 1 ]; then
		omen_log "apt-get update"
		apt-get update -q >/dev/null || return 1
		OMEN_APT_UPDATED=1
	fi
}

# Install the Debian packages that building and testing need, but only the
# missing ones, and skip apt entirely when nothing is missing.
omen_install_deps() {
	local pkgs=(postgresql-15 postgresql-server-dev-15 libipc-run-perl
		build-essential gcc make python3 python3-numpy)
	local missing=() p
	for p in "${pkgs[@]}"; do
		if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -gt 0 ]; then
		if ! omen_is_root; then
			omen_log "error: missing Debian packages: ${missing[*]}"
			omen_log "install them with:  sudo apt-get install -y --no-install-recommends ${missing[*]}"
			return 1
		fi
		omen_log "installing: ${missing[*]}"
		omen_apt_update_once || { omen_log "error: apt-get update failed"; return 1; }
		apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
			{ omen_log "error: apt-get install ${missing[*]} failed"; return 1; }
	fi
	if [ ! -x "$OMEN_PG_CONFIG" ] || [ ! -x "$OMEN_PG_REGRESS" ]; then
		omen_log "error: PostgreSQL 15 server/dev files not found under $OMEN_PGBIN and $OMEN_PGXS_DIR"
		return 1
	fi
	if omen_is_root && ! id postgres >/dev/null 2>&1; then
		omen_log "error: no 'postgres' OS user (the postgresql-15 package normally creates it)"
		return 1
	fi
	return 0
}

# The version in an extension's control file, e.g. 0.8.6.
omen_control_version() {
	sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$1" | head -n 1
}

# Make sure pgvector (the `vector` type omen indexes) is installed: use an
# installed copy, else Debian/PGDG's postgresql-15-pgvector, else build the
# vendored source tarball from the shared folder.  Then insist on >= 0.7.0.
omen_install_pgvector() {
	local sharedir ctl tarball dir ver
	sharedir=$("$OMEN_PG_CONFIG" --sharedir) || return 1
	ctl=$sharedir/extension/vector.control

	if [ ! -f "$ctl" ] && omen_is_root && command -v apt-get >/dev/null; then
		if apt-cache show postgresql-15-pgvector >/dev/null 2>&1 ||
			{ omen_apt_update_once && apt-cache show postgresql-15-pgvector >/dev/null 2>&1; }; then
			omen_log "installing postgresql-15-pgvector"
			apt-get install -y -q --no-install-recommends postgresql-15-pgvector >/dev/null 2>&1 || true
		fi
	fi

	tarball=$OMEN_SHARED/vendor/pgvector-$OMEN_PGVECTOR_VERSION.tar.gz
	if [ ! -f "$ctl" ] && [ -f "$tarball" ]; then
		if ! omen_is_root; then
			omen_log "error: pgvector is not installed; build it as root: $0 (or see README.md)"
			return 1
		fi
		omen_log "building pgvector $OMEN_PGVECTOR_VERSION from $tarball"
		if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$OMEN_PGVECTOR_SHA256" ]; then
			omen_log "error: $tarball does not have the expected SHA-256 $OMEN_PGVECTOR_SHA256"
			return 1
		fi
		dir=$OMEN_CACHE/pgvector-$OMEN_PGVECTOR_VERSION
		rm -rf "$dir" && mkdir -p "$OMEN_CACHE" &&
			tar -xzf "$tarball" -C "$OMEN_CACHE" || return 1
		if ! (cd "$dir" &&
			make -j2 OPTFLAGS="" PG_CONFIG="$OMEN_PG_CONFIG" &&
			make OPTFLAGS="" PG_CONFIG="$OMEN_PG_CONFIG" install) >"$OMEN_CACHE/pgvector-build.log" 2>&1; then
			tail -n 40 "$OMEN_CACHE/pgvector-build.log" >&2
			omen_log "error: building pgvector failed (log: $OMEN_CACHE/pgvector-build.log)"
			return 1
		fi
	fi

	if [ ! -f "$ctl" ]; then
		omen_log "error: pgvector (the 'vector' extension, >= $OMEN_PGVECTOR_MIN) is not installed for PostgreSQL 15."
		omen_log "  Install it in one of these ways, then run this again:"
		omen_log "  - from the PostgreSQL apt repository (https://wiki.postgresql.org/wiki/Apt):"
		omen_log "      apt-get install postgresql-15-pgvector"
		omen_log "  - from source (https://github.com/pgvector/pgvector), in its source tree:"
		omen_log "      make OPTFLAGS=\"\" PG_CONFIG=$OMEN_PG_CONFIG && make OPTFLAGS=\"\" PG_CONFIG=$OMEN_PG_CONFIG install"
		omen_log "  - or put pgvector-$OMEN_PGVECTOR_VERSION.tar.gz in $OMEN_SHARED/vendor/"
		return 1
	fi
	ver=$(omen_control_version "$ctl")
	if [ -z "$ver" ] ||
		[ "$(printf '%s\n%s\n' "$OMEN_PGVECTOR_MIN" "$ver" | sort -V | head -n 1)" != "$OMEN_PGVECTOR_MIN" ]; then
		omen_log "error: pgvector ${ver:-(unknown version)} is installed ($ctl); omen needs >= $OMEN_PGVECTOR_MIN"
		return 1
	fi
	OMEN_PGVECTOR_INSTALLED=$ver
	return 0
}

# Make sure Citus (only the scale-out test and bench/citus use it) is
# installed into the PostgreSQL 15 tree: if its citus.control is missing,
# install its build dependencies with apt and build
# $OMEN_SHARED/vendor/citus-$OMEN_CITUS_VERSION.tar.gz in the cache dir
# (about 80 s on 2 cores, once).  Idempotent; returns 1 with a message
# when Citus is not there afterwards (no ../shared, not root, build failed).
OMEN_CITUS_VERSION=13.0.5
OMEN_CITUS_SHA256=b279cf8b0a0cda459653439ea61388f29e16800e23212ac55d4f17e158f61d40
omen_install_citus() {
	local sharedir tarball dir log pkgs=(liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev)
	local missing=() p
	sharedir=$("$OMEN_PG_CONFIG" --sharedir) || return 1
	[ -f "$sharedir/extension/citus.control" ] && return 0
	tarball=$OMEN_SHARED/vendor/citus-$OMEN_CITUS_VERSION.tar.gz
	if [ ! -f "$tarball" ]; then
		omen_log "citus: not installed and $tarball is absent"
		return 1
	fi
	if ! omen_is_root; then
		omen_log "citus: not installed; building it needs root (run test/run as root)"
		return 1
	fi
	if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$OMEN_CITUS_SHA256" ]; then
		omen_log "citus: $tarball does not have the expected SHA-256 $OMEN_CITUS_SHA256"
		return 1
	fi
	for p in "${pkgs[@]}"; do
		dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		omen_log "citus: installing build dependencies: ${missing[*]}"
		omen_apt_update_once &&
			apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
			{ omen_log "citus: apt-get install ${missing[*]} failed"; return 1; }
	fi
	# one build dir per PostgreSQL installation (test/cassert has its own)
	dir=$OMEN_CACHE/citus-$OMEN_CITUS_VERSION
	[ "$OMEN_PG_CONFIG" = /usr/lib/postgresql/15/bin/pg_config ] ||
		dir=$dir-$(printf '%s' "$OMEN_PG_CONFIG" | cksum | cut -d' ' -f1)
	log=$dir.log
	mkdir -p "$OMEN_CACHE" || return 1
	# a lock, as several clones may run test/run at once; whoever waited
	# finds Citus installed
	if ! (
		flock 9
		[ -f "$sharedir/extension/citus.control" ] && exit 0
		omen_log "citus: building $OMEN_CITUS_VERSION from $tarball in $dir (about 80 s, once)"
		rm -rf "$dir" && mkdir -p "$dir" &&
			tar -xzf "$tarball" -C "$dir" --strip-components=1 || exit 1
		if ! (cd "$dir" &&
			./configure PG_CONFIG="$OMEN_PG_CONFIG" &&
			make -j2 && make install) >"$log" 2>&1; then
			tail -n 40 "$log" >&2
			omen_log "citus: build failed (log: $log)"
			exit 1
		fi
	) 9>"$OMEN_CACHE/citus.lock"; then
		return 1
	fi
	[ -f "$sharedir/extension/citus.control" ] ||
		{ omen_log "citus: installed, but $sharedir/extension/citus.control is missing"; return 1; }
	return 0
}

# Build omen (warnings are errors, see Makefile) and install it into the
# PostgreSQL 15 tree.  The compiler output goes to OMEN_BUILD_LOG (default
# a file in the cache dir) and is shown only when something fails.
omen_build() {
	local log=${OMEN_BUILD_LOG:-}
	if [ -z "$log" ]; then
		mkdir -p "$OMEN_CACHE" && log=$OMEN_CACHE/omen-build.log
	fi
	if ! make -C "$OMEN_REPO" --no-print-directory -j2 PG_CONFIG="$OMEN_PG_CONFIG" >"$log" 2>&1; then
		tail -n 80 "$log" >&2
		omen_log "error: building omen failed (full log: $log)"
		return 1
	fi
	if ! make -C "$OMEN_REPO" --no-print-directory PG_CONFIG="$OMEN_PG_CONFIG" install >>"$log" 2>&1; then
		tail -n 30 "$log" >&2
		if omen_is_root; then
			omen_log "error: make install failed (full log: $log)"
		else
			omen_log "error: make install failed; it writes into the PostgreSQL tree, so run as root (full log: $log)"
		fi
		return 1
	fi
	return 0
}

# ---------------------------------------------------------------- temp dirs, ports, cleanup

# omen_mktemp VAR NAME: create /tmp/omen-NAME.XXXXXX owned by postgres, store
# its path in the variable VAR and remember it for omen_cleanup.  (A variable
# rather than output, as a command substitution's subshell could not
# remember anything.)
omen_mktemp() {
	local _d
	_d=$(mktemp -d "${TMPDIR:-/tmp}/omen-${2:-tmp}.XXXXXX") || return 1
	chmod 755 "$_d"
	if omen_is_root; then
		chown postgres: "$_d" || return 1
	fi
	OMEN_TEMP_DIRS+=("$_d")
	printf -v "$1" '%s' "$_d"
}

# A TCP port nobody listens on (the servers here listen only on a unix
# socket in a private dir, so the port just names the socket file; still,
# pick one that looks free everywhere to keep logs unambiguous).
omen_free_port() {
	local p i
	for ((i = 0; i < 100; i++)); do
		p=$((54000 + RANDOM % 10000))
		[ -e "/tmp/.s.PGSQL.$p" ] && continue
		[ -e "/var/run/postgresql/.s.PGSQL.$p" ] && continue
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			continue
		fi
		printf '%d\n' "$p"
		return 0
	done
	omen_log "error: no free port found"
	return 1
}

# Stop every postmaster whose data directory lies under DIR (pg_regress
# temp instances, TAP nodes, our clusters): needed after an interrupt.
omen_stop_servers_under() {
	local dir=$1 pidfile
	[ -d "$dir" ] || return 0
	while IFS= read -r pidfile; do
		OMEN_PG_CWD=/ omen_as_pg "$OMEN_PGBIN/pg_ctl" stop -D "$(dirname "$pidfile")" \
			-m immediate -w -t 30 >/dev/null 2>&1 || true
	done < <(find "$dir" -name postmaster.pid -type f 2>/dev/null)
}

# Stop the servers and remove the temp dirs this script made.  Silent and
# safe to call more than once.
omen_cleanup() {
	local d
	for d in "${OMEN_TEMP_DIRS[@]}"; do
		omen_stop_servers_under "$d"
	done
	if [ "${OMEN_KEEP_TMP:-0}" = 1 ]; then
		[ ${#OMEN_TEMP_DIRS[@]} -gt 0 ] && omen_log "kept temp dirs: ${OMEN_TEMP_DIRS[*]}"
	else
		for d in "${OMEN_TEMP_DIRS[@]}"; do
			case $d in
			/*/omen-*.*) rm -rf "$d" ;;
			esac
		done
	fi
	OMEN_TEMP_DIRS=()
	OMEN_CLUSTER_DIR=
}

# Children started with omen_bg; killed on interrupt.
declare -ga OMEN_CHILDREN=()

# omen_kill_tree PID: SIGTERM a process and all its descendants (found
# through /proc, so procps is not needed), children first.
omen_kill_tree() {
	local pid=$1 stat rest ppid f kids=()
	for f in /proc/[0-9]*/stat; do
		read -r stat 2>/dev/null <"$f" || continue
		rest=${stat##*) }
		ppid=${rest#* }
		ppid=${ppid%% *}
		[ "$ppid" = "$pid" ] && kids+=("$(basename "$(dirname "$f")")")
	done
	for f in "${kids[@]}"; do
		omen_kill_tree "$f"
	done
	kill -TERM "$pid" 2>/dev/null || true
}

omen_on_signal() {
	local sig=$1 pid
	trap - INT TERM HUP
	# a trap runs with the redirections of the command it interrupted:
	# write to the stderr saved by omen_setup_traps
	printf 'interrupted (%s): stopping servers and removing temp dirs\n' "$sig" >&"${OMEN_SIG_FD:-2}"
	for pid in "${OMEN_CHILDREN[@]}"; do
		omen_kill_tree "$pid"
	done
	sleep 1
	omen_cleanup 2>&"${OMEN_SIG_FD:-2}"
	case $sig in
	INT) exit 130 ;;
	HUP) exit 129 ;;
	*) exit 143 ;;
	esac
}

omen_setup_traps() {
	exec {OMEN_SIG_FD}>&2
	trap 'omen_cleanup' EXIT
	trap 'omen_on_signal INT' INT
	trap 'omen_on_signal TERM' TERM
	trap 'omen_on_signal HUP' HUP
}

# Run a long command in the background and wait for it, so that a signal
# reaches our trap at once instead of after the command ends.  Returns the
# command's exit status.
omen_bg() {
	local pid rc
	"$@" &
	pid=$!
	OMEN_CHILDREN+=("$pid")
	wait "$pid"
	rc=$?
	local p left=()
	for p in "${OMEN_CHILDREN[@]}"; do
		[ "$p" = "$pid" ] || left+=("$p")
	done
	OMEN_CHILDREN=("${left[@]}")
	return $rc
}

# ---------------------------------------------------------------- a throwaway cluster

# omen_cluster_start [CONF-LINE...]: initdb into a fresh temp dir, private
# port and socket dir, then start.  Exports PGHOST PGPORT PGUSER PGDATABASE.
# Extra arguments are appended to postgresql.conf, one line each.
omen_cluster_start() {
	local dir port line
	if [ -n "$OMEN_CLUSTER_DIR" ]; then
		omen_log "error: a cluster is already running in $OMEN_CLUSTER_DIR"
		return 1
	fi
	omen_mktemp dir cluster || return 1
	port=$(omen_free_port) || return 1
	if ! OMEN_PG_CWD=$dir omen_as_pg "$OMEN_PGBIN/initdb" -D "$dir/data" -U postgres \
		-A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
		cat "$dir/initdb.log" >&2
		omen_log "error: initdb failed"
		return 1
	fi
	{
		echo "# added by omen_cluster_start (test/lib.sh)"
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "shared_buffers = 256MB"
		echo "fsync = off"
		echo "synchronous_commit = off"
		echo "full_page_writes = off"
		echo "max_wal_size = 4GB"
		echo "log_min_messages = warning"
		for line in "$@"; do
			echo "$line"
		done
	} >>"$dir/data/postgresql.conf"
	if ! OMEN_PG_CWD=$dir omen_as_pg "$OMEN_PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
		-w -t 120 start >/dev/null 2>&1; then
		tail -n 30 "$dir/server.log" >&2
		omen_log "error: could not start the cluster in $dir"
		return 1
	fi
	OMEN_CLUSTER_DIR=$dir
	export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
	return 0
}

# Stop the cluster from omen_cluster_start and remove its directory.
omen_cluster_stop() {
	local dir=$OMEN_CLUSTER_DIR d keep=()
	[ -n "$dir" ] || return 0
	if [ -f "$dir/data/postmaster.pid" ]; then
		OMEN_PG_CWD=$dir omen_as_pg "$OMEN_PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop \
			>/dev/null 2>&1 || omen_stop_servers_under "$dir"
	fi
	if [ "${OMEN_KEEP_TMP:-0}" != 1 ]; then
		rm -rf "$dir"
		for d in "${OMEN_TEMP_DIRS[@]}"; do
			[ "$d" = "$dir" ] || keep+=("$d")
		done
		OMEN_TEMP_DIRS=("${keep[@]}")
	fi
	OMEN_CLUSTER_DIR=
	unset PGHOST PGPORT PGUSER PGDATABASE
}

# psql as postgres into the current cluster; stops at the first error.
omen_psql() {
	OMEN_PG_CWD=${OMEN_PG_CWD:-${OMEN_CLUSTER_DIR:-/}} omen_as_pg env \
		PGHOST="${PGHOST:-}" PGPORT="${PGPORT:-}" PGUSER="${PGUSER:-postgres}" \
		PGDATABASE="${PGDATABASE:-postgres}" PGOPTIONS="${PGOPTIONS:-}" \
		"$OMEN_PGBIN/psql" -X -v ON_ERROR_STOP=1 "$@"
}

# ---------------------------------------------------------------- timing

# Seconds since the epoch with microseconds, from bash itself.
omen_now_us() {
	local t=${EPOCHREALTIME/[.,]/}
	printf '%s\n' "$t"
}

# Format microseconds as seconds with one decimal: 12.3
omen_fmt_secs() {
	local us=$1
	printf '%d.%d' $((us / 1000000)) $(((us % 1000000) / 100000))
}

# omen_time NAME CMD...: run CMD in this shell (so it may set variables),
# record its wall time in OMEN_TIMES[NAME] (seconds, one decimal) and
# OMEN_LAST_SECS; return CMD's status.
omen_time() {
	local name=$1 t0 t1 rc
	shift
	t0=$(omen_now_us)
	"$@"
	rc=$?
	t1=$(omen_now_us)
	OMEN_LAST_SECS=$(omen_fmt_secs $((t1 - t0)))
	[ -n "${OMEN_TIMES[$name]+x}" ] || OMEN_TIME_ORDER+=("$name")
	OMEN_TIMES[$name]=$OMEN_LAST_SECS
	return $rc
}
