# Copyright (c) omen contributors
#
# 003_crash.pl: an omen index survives crashes.
#
# (a) Four sessions insert rows, one per transaction, into two tables (one
#     indexed with full float codes, one with 1-bit codes) while the server
#     is stopped in immediate mode (a crash for the data directory), three
#     times in a row; after crash recovery every committed row must be in
#     the tables and found through their indexes.
# (b) A crash in the middle of CREATE INDEX, of CREATE INDEX CONCURRENTLY,
#     and after a finished but uncommitted CREATE INDEX: afterwards the
#     index does not exist (or is left invalid, for CONCURRENTLY), and
#     building it again works (with 1-bit, then 8-bit codes).
# (c) One inserting backend is killed with SIGKILL: the postmaster
#     terminates all backends and runs crash recovery (three times); then
#     as in (a).
# (d) A VACUUM backend is killed with SIGKILL: once stopped at its wait
#     point vacuum-after-slots (an extent's slots marked deleted, their codes
#     and the graph not yet; a fifth of the rows deleted), and then three
#     times at a random moment while it vacuums a fresh index that lost a
#     third of its rows.  After crash recovery omen_verify(index, true)
#     passes, every remaining row is found through the index and no deleted
#     one is returned; a plain VACUUM then leaves no deleted element, one
#     element per row, and none unreachable.  Last, without a crash: VACUUM
#     after deleted rows were inserted again and deleted again leaves no
#     element unreachable.
# (The parts run in the order a, c, b, d.)
#
# The node runs with wal_consistency_checking = 'generic', so crash recovery
# also compares every page it rebuilds from omen's WAL with the full image
# carried by the record: a difference stops the server from starting.
#
# "Found through the index" means: a LIMIT 1 index scan for each row's own
# vector returns that row at distance 0 (the data has no duplicates), index
# scans return rows in non-decreasing distance, a scan drained to the end
# returns no row twice and nearly every row, and after VACUUM the index holds exactly one live
# element per row.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $data = $ENV{OMEN_TEST_DATA};
plan skip_all => 'OMEN_TEST_DATA is not set (run this through test/run)'
  unless defined $data && -r "$data/bigann_base.tsv";
(my $qdata = $data) =~ s/'/''/g;

my $NBASE = 2000;       # rows of t when its index is built
my $NINSERTERS = 4;     # concurrent inserting sessions
my $NCOMMIT = 60;       # commits each inserter reports before a crash
my $NROUNDS = 3;        # crashes in a row before the index is checked
my $NSRC = 9900;        # rows in bigann_base.tsv
my $K = 10;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
wal_level = replica
wal_consistency_checking = 'generic'
shared_buffers = 16MB
restart_after_crash = on
log_statement = none
});
$node->start;

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION omen CASCADE;
CREATE TABLE src (id int PRIMARY KEY, v vector(128));
COPY src FROM '$qdata/bigann_base.tsv';
CREATE TABLE queries (id int PRIMARY KEY, v vector(128));
COPY queries FROM '$qdata/bigann_query.tsv' WHERE id <= 20;
CREATE TABLE t (id int, v vector(128));
INSERT INTO t SELECT id, v FROM src WHERE id <= $NBASE;
CREATE INDEX t_v ON t USING omen (v vector_l2_ops) WITH (m = 16, ef_construction = 64);
CREATE TABLE tq (id int, v vector(128));
INSERT INTO tq SELECT id, v FROM src WHERE id <= $NBASE;
CREATE INDEX tq_v ON tq USING omen (v vector_l2_ops) WITH (quantizer = 'bq');
CHECKPOINT;
});
my @queries = split /\n/,
  $node->safe_psql('postgres', 'SELECT v FROM queries ORDER BY id');

# ---- helpers

# Run a psql script in the background, from a file (so that nothing
# needs to be fed to its stdin while we wait).
my $scriptdir = PostgreSQL::Test::Utils::tempdir;
my $nscripts = 0;

sub start_psql
{
	my ($name, $sql) = @_;
	my $file = "$scriptdir/" . ++$nscripts . ".sql";
	my %bg = (name => $name, out => '', err => '');

	open my $fh, '>', $file or die "could not write $file: $!";
	print $fh $sql;
	close $fh;
	$bg{h} = IPC::Run::start(
		[
			'psql', '-XAtq', '-d',
			$node->connstr('postgres') . " application_name=$name",
			'-f', $file
		],
		'<', \undef, '>', \$bg{out}, '2>', \$bg{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%bg;
}

# Start a psql session inserting the given source rows into t and tq, a
# row into each per transaction.  RETURNING makes psql print each id once
# its transaction has committed (the result is complete only after the
# commit).
sub start_inserter
{
	my ($name, @ids) = @_;
	return start_psql(
		$name,
		join '',
		map {
			"WITH a AS (INSERT INTO t SELECT id, v FROM src WHERE id = $_)
			 INSERT INTO tq SELECT id, v FROM src WHERE id = $_ RETURNING id;\n"
		} @ids);
}

sub committed_ids
{
	my ($ins) = @_;
	return $ins->{out} =~ /^(\d+)$/mg;
}

# Wait until every inserter has reported at least $n commits.
sub wait_commits
{
	my ($n, @ins) = @_;

	for (1 .. 100 * $PostgreSQL::Test::Utils::timeout_default)
	{
		$_->{h}->pump_nb for @ins;
		return 1 unless grep { scalar(my @c = committed_ids($_)) < $n } @ins;
		die "inserter $_->{name} stopped: $_->{err}"
		  for grep { !$_->{h}->pumpable } @ins;
		usleep(10_000);
	}
	die "inserters did not commit $n rows in time";
}

# Collect what the inserters printed until the server went away.
sub finish_inserters
{
	my @ids;

	for my $ins (@_)
	{
		eval { $ins->{h}->finish; };
		note("$ins->{name}: " . ($@ || "psql exit status " . ($ins->{h}->result // '?')));
		push @ids, committed_ids($ins);
	}
	return @ids;
}

# Run a query that may fail while the server restarts, until it answers.
sub wait_ready
{
	return $node->poll_query_until('postgres', 'SELECT 1', '1');
}

# Check that every row of $table is found through its omen index $index.
# $sample restricts the own-vector searches to ids divisible by it.
sub check_index
{
	my ($label, $table, $index, $sample) = @_;

	local $Test::Builder::Level = $Test::Builder::Level + 1;

	my $nrows = $node->safe_psql('postgres', "SELECT count(*) FROM $table");

	# the ids and vectors to look for, read without the index
	$node->safe_psql(
		'postgres', qq{DROP TABLE IF EXISTS probe;
CREATE TABLE probe AS SELECT id, v FROM $table WHERE id % $sample = 0});
	my $self = qq{SELECT p.id, nn.id, nn.d
  FROM probe p LEFT JOIN LATERAL
       (SELECT x.id, x.v <-> p.v AS d FROM $table x ORDER BY x.v <-> p.v LIMIT 1) nn ON true
 WHERE nn.id IS DISTINCT FROM p.id OR nn.d <> 0};
	my $set = "SET enable_seqscan = off; SET omen.ef_search = 40;";
	like($node->safe_psql('postgres', "$set EXPLAIN (COSTS OFF) $self"),
		qr/Index Scan using $index on $table/,
		"$label: own-vector searches use $index");
	my $nprobe = $node->safe_psql('postgres', 'SELECT count(*) FROM probe');
	my ($nmissed, $examples) = split /\|/,
	  $node->safe_psql('postgres',
		"$set SELECT count(*), string_agg(format('%s (found %s at %s)', p, n, d), ', ')
		   FROM ($self ORDER BY 1) m (p, n, d)");
	is($nmissed, 0,
		"$label: each of $nprobe rows is found by an index search for its own vector, at distance 0"
	) or diag("rows not found: $examples");

	# k nearest, in order, and mostly the true ones
	my ($bad, $hit, $all) = ('', 0, 0);
	for my $qi (0 .. $#queries)
	{
		my $q = "SELECT id, v <-> '$queries[$qi]' FROM $table ORDER BY v <-> '$queries[$qi]' LIMIT 50";
		my @got = map { [ split /\|/ ] } split /\n/, $node->safe_psql('postgres', "$set $q");
		my %exact = map { (split /\|/)[0] => 1 }
		  (split /\n/, $node->safe_psql('postgres', "SET enable_indexscan = off; $q"))[ 0 .. $K - 1 ];
		$bad .= "query $qi: " . scalar(@got) . " rows\n" if @got != 50;
		for my $i (1 .. $#got)
		{
			$bad .= "query $qi: distance decreases at rank $i\n"
			  if $got[$i][1] < $got[ $i - 1 ][1];
		}
		$hit += grep { $exact{ $_->[0] } } @got[ 0 .. $K - 1 ];
		$all += $K;
	}
	is($bad, '', "$label: LIMIT 50 index scans return 50 rows in non-decreasing distance");
	cmp_ok($hit / $all, '>=', 0.9, "$label: recall\@$K of 20 queries is at least 0.9");

	# Drained to the end, a scan returns every row once, except the few a
	# late search round finds closer than a row already returned: those
	# cannot go out in order and are dropped (see src/omenscan.c).
	my ($twice, $short) = ('', '');
	for my $qi (0, 7, 13)
	{
		my ($n, $distinct) = split /\|/,
		  $node->safe_psql('postgres',
			"$set SELECT count(*), count(DISTINCT id) FROM
			   (SELECT id FROM $table ORDER BY v <-> '$queries[$qi]' LIMIT 1000000) s");
		$twice .= "query $qi: $n rows, $distinct distinct, of $nrows\n"
		  if $n != $distinct || $n > $nrows;
		$short .= "query $qi: $n of $nrows rows\n" if $n < 0.99 * $nrows;
	}
	is($twice, '', "$label: drained index scans return no row twice");
	is($short, '', "$label: drained index scans return at least 99% of the $nrows rows");

	# Elements of transactions the crash aborted point to dead tuples:
	# VACUUM (forced to clean the index) marks them deleted.
	$node->safe_psql('postgres', "VACUUM (INDEX_CLEANUP ON) $table");
	is($node->safe_psql('postgres', "SELECT elements FROM omen_index_info('$index')"),
		$nrows, "$label: after VACUUM the index has one live element per row ($nrows)");
}

# Start $NINSERTERS sessions inserting the source rows that t does not
# have yet (those of transactions a crash aborted come back later).
sub start_inserters
{
	my ($tag) = @_;
	my %have = map { $_ => 1 } split /\n/, $node->safe_psql('postgres', 'SELECT id FROM t');
	my @todo = grep { !$have{$_} } $NBASE + 1 .. $NSRC;

	return map {
		my $i = $_;
		start_inserter("${tag}_$i", @todo[ grep { $_ % $NINSERTERS == $i } 0 .. $#todo ]);
	} 0 .. $NINSERTERS - 1;
}

sub check_committed
{
	my ($label, @committed) = @_;
	my $n = @committed;

	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ids = join(',', @committed);
	is( $node->safe_psql(
			'postgres',
			"SELECT (SELECT count(*) FROM t WHERE id = ANY ('{$ids}')) || ' ' ||
			        (SELECT count(*) FROM tq WHERE id = ANY ('{$ids}'))"),
		"$n $n",
		"$label: all $n inserts reported committed before the crashes are in the tables");
}

# ---- (a) immediate shutdowns while sessions insert

my @committed;
for my $round (1 .. $NROUNDS)
{
	my @ins = start_inserters("a$round");
	wait_commits($NCOMMIT, @ins);
	$node->stop('immediate');
	push @committed, finish_inserters(@ins);
	ok($node->start(fail_ok => 1),
		"(a) round $round: the server restarts after an immediate shutdown during inserts, recovery passing its page checks"
	) or die "the server did not come back";
}
check_committed('(a)', @committed);
check_index('(a) after crash recovery', 't', 't_v', 1);
check_index('(a) after crash recovery, 1-bit codes', 'tq', 'tq_v', 1);

# ---- (c) SIGKILL of one inserting backend

@committed = ();
for my $round (1 .. $NROUNDS)
{
	my @ins = start_inserters("c$round");
	wait_commits($NCOMMIT, @ins);

	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'c${round}_0'");
	my $logpos = -s $node->logfile;
	ok(kill('KILL', $pid), "(c) round $round: SIGKILL sent to an inserting backend (pid $pid)");
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $logpos);
	push @committed, finish_inserters(@ins);
	ok(wait_ready(), "(c) round $round: the server accepts connections again after crash recovery");
}
check_committed('(c)', @committed);
check_index('(c) after SIGKILL and crash recovery', 't', 't_v', 1);
check_index('(c) after SIGKILL and crash recovery, 1-bit codes', 'tq', 'tq_v', 1);

# ---- (b) crashes during CREATE INDEX

# The build is paused half-way through the table by an index predicate
# that sleeps at one row when asked to, so that the crash certainly comes
# in the middle of the build (after segments were written: the build runs
# with maintenance_work_mem = 1MB).
$node->safe_psql(
	'postgres', q{
CREATE TABLE big AS SELECT id, v FROM src ORDER BY id;
CREATE FUNCTION build_pause(id int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF id = 5000 AND current_setting('crash_test.pause', true) = 'on' THEN
		PERFORM pg_sleep(300);
	END IF;
	RETURN true;
END $$;
CHECKPOINT;
});

# Run $sql in the background, wait until it sleeps, crash, restart.
sub crash_while
{
	my ($label, $sql, $sleeper) = @_;
	my $bg = start_psql('crash_while', $sql);

	for (my $i = 0;; $i++)
	{
		last
		  if $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '$sleeper%'"
		  ) eq '1';
		$bg->{h}->pump_nb;
		die "$label: the statement ended before its pause: $bg->{err}"
		  unless $bg->{h}->pumpable;
		die "$label: the statement did not reach its pause in time"
		  if $i > 10 * $PostgreSQL::Test::Utils::timeout_default;
		usleep(100_000);
	}
	my $progress = $node->safe_psql('postgres',
		"SELECT tuples_done FROM pg_stat_progress_create_index");
	$node->stop('immediate');
	eval { $bg->{h}->finish; };
	like($bg->{err}, qr/connection to server was lost|server closed the connection/,
		"$label: the statement was cut off by the crash");
	ok($node->start(fail_ok => 1), "$label: the server restarts, recovery passes its page checks")
	  or die "the server did not come back";
	return $progress;
}

my $done = crash_while(
	'(b) crash during CREATE INDEX',
	"SET crash_test.pause = on; SET maintenance_work_mem = '1MB';
CREATE INDEX big_p ON big USING omen (v vector_l2_ops) WITH (quantizer = 'bq') WHERE build_pause(id);",
	'CREATE INDEX');
is($done, 4999, '(b) the build was paused after 4999 of 9900 rows');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'big_p'"),
	'0', '(b) after the crash, the index of the interrupted CREATE INDEX does not exist');

$node->safe_psql('postgres',
	"SET maintenance_work_mem = '1MB'; CREATE INDEX big_v ON big USING omen (v vector_l2_ops) WITH (quantizer = 'bq')");
cmp_ok($node->safe_psql('postgres', "SELECT segments FROM omen_index_info('big_v')"),
	'>', 1, '(b) CREATE INDEX again works, writing several segments');
check_index('(b) rebuilt after the crash', 'big', 'big_v', 10);

$node->safe_psql('postgres', 'DROP INDEX big_v');
$done = crash_while(
	'(b) crash during CREATE INDEX CONCURRENTLY',
	"SET crash_test.pause = on; SET maintenance_work_mem = '1MB';
CREATE INDEX CONCURRENTLY big_pc ON big USING omen (v vector_l2_ops) WITH (quantizer = 'sq8') WHERE build_pause(id);",
	'CREATE INDEX');
is($done, 4999, '(b) the concurrent build was paused after 4999 of 9900 rows');
is( $node->safe_psql(
		'postgres',
		"SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_pc'::regclass"),
	'f',
	'(b) after the crash, the index of the interrupted CREATE INDEX CONCURRENTLY is invalid');
$node->safe_psql('postgres',
	"DROP INDEX big_pc; CREATE INDEX CONCURRENTLY big_v ON big USING omen (v vector_l2_ops) WITH (quantizer = 'sq8')");
is($node->safe_psql('postgres', "SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_v'::regclass"),
	't', '(b) it is dropped, and CREATE INDEX CONCURRENTLY again works');

# A crash after a build that wrote and WAL-logged all its pages, before
# its transaction committed: recovery replays those pages into a relation
# that is then thrown away.
crash_while(
	'(b) crash after an uncommitted CREATE INDEX',
	"BEGIN; CREATE INDEX big_u ON big USING omen (v vector_l2_ops); SELECT pg_sleep(300);",
	'SELECT pg_sleep');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'big_u'"),
	'0', '(b) after the crash, the uncommitted index does not exist');
check_index('(b) the concurrently built index, after another crash', 'big', 'big_v', 10);

# ---- (d) SIGKILL of a VACUUM backend

# SIGKILL the active backend with application_name $name, wait for crash
# recovery and collect the background psqls @bgs; false, and nothing
# killed, if that backend had finished before.
sub kill_and_recover
{
	my ($label, $name, @bgs) = @_;
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = '$name' AND state = 'active'");
	if ($pid eq '')
	{
		$_->{h}->finish for @bgs;
		return 0;
	}
	my $logpos = -s $node->logfile;
	kill('KILL', $pid) or die "$label: cannot signal $pid: $!";
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $logpos);
	for my $bg (@bgs)
	{
		eval { $bg->{h}->finish; };
	}
	wait_ready() or die "$label: the server did not come back";
	return 1;
}

# What must hold after a crash in the middle of VACUUM of vt, whose rows
# satisfying $gone were deleted: omen_verify passes, no deleted row comes
# out of a scan, every row is found (check_index, which ends with a VACUUM),
# and that VACUUM leaves one live element per row and nothing behind.
sub check_after_vacuum_crash
{
	my ($label, $gone) = @_;

	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($rc, $out, $err) =
	  $node->psql('postgres', "SELECT elements, deleted, unreachable FROM omen_verify('vt_v', true)");
	ok($rc == 0 && $err !~ /ERROR|PANIC/,
		"$label: omen_verify(vt_v, true) passes after crash recovery")
	  or diag($err);
	note("$label: omen_verify after recovery (elements|deleted|unreachable): $out");
	my $wrong = '';
	for my $qi (0, 7, 13)
	{
		$wrong .= $node->safe_psql(
			'postgres',
			"SET enable_seqscan = off; SET omen.ef_search = 40;
			 SELECT string_agg(id::text, ',') FROM
			   (SELECT id FROM vt ORDER BY v <-> '$queries[$qi]' LIMIT 1000000) s
			 WHERE $gone");
	}
	is($wrong, '', "$label: drained index scans return no deleted row");
	check_index($label, 'vt', 'vt_v', 1);
	is( $node->safe_psql(
			'postgres',
			"SELECT i.deleted_elements || ' ' || v.unreachable
			   FROM omen_index_info('vt_v') i, omen_verify('vt_v', true) v"),
		'0 0',
		"$label: after that VACUUM no element is left deleted and none is unreachable");
}

# vt: the source rows, a fresh omen index, then the rows satisfying
# $gone deleted (autovacuum kept away)
sub make_vt
{
	my ($gone) = @_;
	$node->safe_psql(
		'postgres', qq{
DROP TABLE IF EXISTS vt;
CREATE TABLE vt (id int, v vector(128)) WITH (autovacuum_enabled = off);
INSERT INTO vt SELECT id, v FROM src;
CREATE INDEX vt_v ON vt USING omen (v vector_l2_ops) WITH (m = 16, ef_construction = 64);
DELETE FROM vt WHERE $gone;
CHECKPOINT;
});
}

make_vt('id % 5 = 0');

# A session holds the advisory lock of the wait point; the VACUUM stops
# there after marking the first extent's slots deleted.
my $holder = start_psql('vac_holder',
	"SELECT pg_advisory_lock(hashtext('vacuum-after-slots'));\nSELECT pg_sleep(300);\n");
$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", '1')
  or die "the advisory lock was not taken";
my $vac = start_psql('vac_wait', "SET omen.debug_wait_point = 'vacuum-after-slots';\nVACUUM vt;\n");
$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vac_wait' AND wait_event = 'advisory'",
	'1')
  or die "VACUUM did not reach its wait point: $vac->{err}";
# A checkpoint puts the marks on disk, so that recovery starts from an
# index with deleted slots whose codes are not marked and whose neighbours
# still link to them (else the unflushed WAL of the killed VACUUM is lost
# and recovery finds the index as it was before).
my $marked = $node->safe_psql('postgres',
	"CHECKPOINT; SELECT deleted_elements FROM omen_index_info('vt_v')");
cmp_ok($marked, '>', 0, '(d) VACUUM stopped at its wait point with deleted elements in the index');
ok(kill_and_recover('(d) wait point', 'vac_wait', $vac, $holder),
	'(d) SIGKILL of the VACUUM at its wait point, crash recovery done');
like($vac->{err}, qr/connection to server was lost|server closed the connection/,
	'(d) the VACUUM was cut off by the crash');
is($node->safe_psql('postgres', "SELECT deleted_elements FROM omen_index_info('vt_v')"),
	$marked, "(d) after recovery the index still has the $marked elements marked deleted");
check_after_vacuum_crash('(d) after SIGKILL at vacuum-after-slots', 'id % 5 = 0');

# Then, three times, a fresh index loses a third of its rows, and its
# VACUUM is killed at a random moment of its index phase.  A kill that
# comes after the VACUUM ended is a miss; most must hit.  (Each round
# starts from a fresh build.  With two thirds deleted, a VACUUM killed after marking them
# all leaves an index whose searches, before the next VACUUM repairs it,
# now and then miss a row: deleted elements still route searches, but a
# graph of mostly deleted elements routes them less well.)
my $hits = 0;
for my $round (1 .. 3)
{
	my $gone = "id % 3 = $round % 3";
	make_vt($gone);
	my $bg = start_psql("vac_rand$round", "VACUUM vt;\n");
	for (my $i = 0;; $i++)
	{
		last
		  if $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a USING (pid)
			  WHERE a.application_name = 'vac_rand$round' AND p.phase = 'vacuuming indexes'") eq '1';
		$bg->{h}->pump_nb;
		last unless $bg->{h}->pumpable;
		die "(d) round $round: VACUUM did not reach its index phase in time"
		  if $i > 100 * $PostgreSQL::Test::Utils::timeout_default;
		usleep(10_000);
	}
	usleep(int(rand(300_000)));
	my $hit = kill_and_recover("(d) round $round", "vac_rand$round", $bg);
	note("(d) round $round: " . ($hit ? 'VACUUM killed' : 'VACUUM had finished before the kill'));
	$hits += $hit;
	check_after_vacuum_crash("(d) round $round, after SIGKILL during VACUUM", $gone);
}
cmp_ok($hits, '>=', 2, '(d) at least 2 of 3 random kills hit a running VACUUM');

# No crash here, but the same checks: the deleted rows inserted again, into
# the slots VACUUM freed, and again two thirds deleted; VACUUM then leaves
# no element unreachable (it links again what its repair left unreached).
make_vt('id % 3 <> 0');
$node->safe_psql(
	'postgres', q{
VACUUM vt;
INSERT INTO vt SELECT id, v FROM src WHERE id % 3 <> 0;
DELETE FROM vt WHERE id % 3 <> 1;
VACUUM vt;
});
is($node->safe_psql('postgres', "SELECT unreachable FROM omen_verify('vt_v', true)"),
	'0', '(d) VACUUM after a delete, insert, delete cycle leaves no element unreachable');

$node->stop;

done_testing();
