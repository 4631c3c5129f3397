# Copyright (c) omen contributors
#
# 002_wal.pl: omen's WAL is complete and replays to the very same pages.
#
# The primary runs with wal_consistency_checking = 'generic': every generic
# WAL record (omen's inserts and vacuum) then carries full images of the
# pages it touches, and whoever replays it compares its own result with
# them, failing with "inconsistent page found" on the first difference.  A
# streaming standby replays everything: an L2 index built on BIGANN
# vectors (full float codes), a cosine index built on GloVe vectors (1-bit
# codes) and an inner-product index on 3000-d random vectors (8-bit codes;
# the vectors span two pages), then single-row inserts, a multi-row
# insert, a DELETE and VACUUM, and more inserts.  While the primary
# inserts and vacuums, a session on the standby keeps searching, and must
# never fail.
#
# After each step the standby must have replayed all of it, and then it
# must answer 20 nearest-neighbour queries with exactly the ids the primary
# returns: the search is deterministic, so identical pages give identical
# answers and any page the WAL failed to carry shows up as a difference.
# omen_index_info() must agree too (elements, deleted elements, pages).
#
# An unlogged table set logged (its index rebuilt) must reach the standby
# too, and after promotion the standby's indexes must take inserts.
#
# Unlogged indexes have no WAL but an init fork (ambuildempty): after an
# immediate shutdown of the primary, and on the standby once it is promoted,
# an unlogged table is empty and its index, reset from the init fork, must
# take inserts and find them.

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

# How many rows each step adds (ids are consecutive rows of the TSV files)
my $NBUILD = 4000;     # rows present at CREATE INDEX
my $NSINGLE = 300;     # then inserted one row per transaction
my $NMULTI = 500;      # then inserted by one INSERT ... SELECT
my $NAFTER = 300;      # inserted after the VACUUM (half single, half multi)
my $K = 10;            # neighbours asked for
my $NQUERIES = 20;     # queries compared between primary and standby
my $EF_SEARCH = 40;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', qq{
wal_consistency_checking = 'generic'
shared_buffers = 16MB
max_wal_size = 1GB
log_statement = none
});
$primary->start;

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

is($primary->safe_psql('postgres', 'SHOW wal_consistency_checking'),
	'generic', 'the primary asks for consistency checks of generic WAL records');

(my $qdata = $data) =~ s/'/''/g;

# The data sets: all vectors in a source table, the indexed table filled
# from it step by step.
my %sets = (
	bigann => {
		table => 'big',
		index => 'big_v',
		dims => 128,
		op => '<->',
		opclass => 'vector_l2_ops',
		with => '',
		quantizer => 'none',
		recall => 0.9,
		div => 1,
	},
	glove => {
		table => 'glo',
		index => 'glo_v',
		dims => 100,
		op => '<=>',
		opclass => 'vector_cosine_ops',
		with => ", quantizer = 'bq'",
		quantizer => 'bq',
		recall => 0.9,
		div => 1,
	},
	# Vectors too long for one page are stored as chains of chunks, each
	# on a page of its own: random ones, a tenth as many rows.
	wide => {
		table => 'wide',
		index => 'wide_v',
		dims => 3000,
		op => '<#>',
		opclass => 'vector_ip_ops',
		with => ", quantizer = 'sq8'",
		quantizer => 'sq8',
		recall => 0.8,
		div => 10,
	});
my @setnames = sort keys %sets;

# Source rows for the wide set, the same on every run
sub random_vectors
{
	my ($table, $n, $dims, $seed) = @_;
	return qq{SELECT setseed($seed);
INSERT INTO $table SELECT i, (SELECT array_agg(random() - 0.5) FROM generate_series(1, $dims) WHERE i > 0)::vector
  FROM generate_series(1, $n) i;};
}

$primary->safe_psql('postgres', 'CREATE EXTENSION omen CASCADE');
for my $name (@setnames)
{
	my $s = $sets{$name};
	my ($t, $d, $div) = ($s->{table}, $s->{dims}, $s->{div});
	my $load =
	  $name eq 'wide'
	  ? random_vectors("${name}_src", ($NBUILD + $NSINGLE + $NMULTI + $NAFTER) / $div + 1, $d, 0.25)
	  . random_vectors("${name}_query", $NQUERIES, $d, 0.75)
	  : qq{COPY ${name}_src FROM '$qdata/${name}_base.tsv';
COPY ${name}_query FROM '$qdata/${name}_query.tsv' WHERE id <= $NQUERIES;};

	$primary->safe_psql(
		'postgres', qq{
CREATE TABLE ${name}_src (id int PRIMARY KEY, v vector($d));
CREATE TABLE ${name}_query (id int PRIMARY KEY, v vector($d));
$load
CREATE TABLE $t (id int, v vector($d));
INSERT INTO $t SELECT id, v FROM ${name}_src WHERE id <= $NBUILD / $div;
CREATE INDEX $s->{index} ON $t USING omen (v $s->{opclass})
	WITH (m = 16, ef_construction = 64 $s->{with});
});
	$s->{queries} = [
		map { [ split /\|/ ] } split /\n/,
		$primary->safe_psql('postgres',
			"SELECT id, v FROM ${name}_query ORDER BY id")
	];
	$s->{next} = $NBUILD / $div + 1;    # next source row to insert
	$s->{deleted} = {};
}

# Wait until the standby has replayed everything the primary wrote.
# Fails at once, rather than after the catch-up timeout, when replay
# stopped on an inconsistent page or the standby died.
sub replay_all
{
	my $target = $primary->lsn('insert');
	my $tries = 10 * $PostgreSQL::Test::Utils::timeout_default;

	for (1 .. $tries)
	{
		my ($rc, $out) = $standby->psql('postgres',
			"SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn");
		return 1 if $rc == 0 && $out eq 't';
		my $log = slurp_file($standby->logfile);
		if ($log =~
			/^(.*(?:inconsistent page found|PANIC:|FATAL: .*recovery|terminated by signal).*)$/m)
		{
			diag("standby stopped replaying: $1");
			return 0;
		}
		usleep(100_000);
	}
	diag("standby did not replay up to $target in time");
	return 0;
}

# The k nearest neighbours of every query of a set, through the index:
# a hash of query id => [[id, distance], ...].  With $exact, by a sort
# instead, for recall.
sub knn
{
	my ($node, $s, $exact) = @_;
	my $sql =
	  $exact
	  ? "SET enable_indexscan = off; SET enable_bitmapscan = off;\n"
	  : "SET enable_seqscan = off; SET omen.ef_search = $EF_SEARCH;\n";
	my %res;

	for my $q (@{ $s->{queries} })
	{
		my ($qid, $vec) = @$q;
		$sql .=
		  "SELECT $qid, id, v $s->{op} '$vec' FROM $s->{table} ORDER BY v $s->{op} '$vec' LIMIT $K;\n";
	}
	for my $line (split /\n/, $node->safe_psql('postgres', $sql))
	{
		my ($qid, $id, $dist) = split /\|/, $line;
		push @{ $res{$qid} }, [ $id, $dist ];
	}
	return \%res;
}

sub ids_text
{
	my ($res) = @_;
	return join "\n",
	  map { "$_: " . join(',', map { $_->[0] } @{ $res->{$_} }) }
	  sort { $a <=> $b } keys %$res;
}

# Compare the primary's and the standby's answers, check the standby's for
# sanity and recall, and compare omen_index_info().
sub check_replay
{
	my ($phase) = @_;

	local $Test::Builder::Level = $Test::Builder::Level + 1;

	ok(replay_all(), "$phase: the standby replays all WAL, consistency checks passing")
	  or die "the standby is not replaying";

	for my $name (@setnames)
	{
		my $s = $sets{$name};
		my $p = knn($primary, $s);
		my $sb = knn($standby, $s);
		my $exact = knn($standby, $s, 1);

		is(ids_text($sb), ids_text($p),
			"$phase: $name: the standby's index returns the primary's ids for $NQUERIES queries");

		# The same pages give the same floats; allow for printing anyway.
		my $maxdiff = 0;
		for my $qid (keys %$p)
		{
			for my $i (0 .. $#{ $p->{$qid} })
			{
				my ($pd, $sd) = ($p->{$qid}[$i][1], $sb->{$qid}[$i][1] // 'NaN');
				my $diff = abs($pd - $sd) / (1 + abs($pd));
				$maxdiff = $diff if $diff > $maxdiff || $diff != $diff;
			}
		}
		cmp_ok($maxdiff, '<=', 1e-6,
			"$phase: $name: the standby's distances equal the primary's");

		my @bad;
		for my $qid (sort { $a <=> $b } keys %$sb)
		{
			my $rows = $sb->{$qid};
			push @bad, "query $qid: " . scalar(@$rows) . " rows" if @$rows != $K;
			for my $i (1 .. $#$rows)
			{
				push @bad, "query $qid: distance decreases at rank $i"
				  if $rows->[$i][1] < $rows->[ $i - 1 ][1];
			}
			push @bad, "query $qid: deleted row $_->[0] returned"
			  for grep { $s->{deleted}{ $_->[0] } } @$rows;
		}
		push @bad, "$NQUERIES queries expected, got " . scalar(keys %$sb)
		  if keys %$sb != $NQUERIES;
		is(join("\n", @bad), '',
			"$phase: $name: the standby returns $K live rows per query in distance order");

		my ($hit, $all) = (0, 0);
		for my $qid (keys %$exact)
		{
			my %want = map { $_->[0] => 1 } @{ $exact->{$qid} };
			$hit += grep { $want{ $_->[0] } } @{ $sb->{$qid} };
			$all += @{ $exact->{$qid} };
		}
		note(sprintf("%s: %s: recall\@%d %.3f", $phase, $name, $K, $hit / $all));
		cmp_ok($hit / $all, '>=', $s->{recall},
			"$phase: $name: recall\@$K on the standby is at least $s->{recall}");

		my $info = "SELECT * FROM omen_index_info('$s->{index}')";
		my $pinfo = $primary->safe_psql('postgres', $info);
		is($standby->safe_psql('postgres', $info),
			$pinfo, "$phase: $name: omen_index_info() agrees on both nodes");

		# one live element per row; VACUUM frees the deleted ones' slots
		my $ndeleted = keys %{ $s->{deleted} };
		is( $standby->safe_psql(
				'postgres',
				"SELECT (SELECT count(*) FROM $s->{table}) || ' ' || elements || ' ' || deleted_elements
				   FROM omen_index_info('$s->{index}')"),
			($s->{next} - 1 - $ndeleted) . " " . ($s->{next} - 1 - $ndeleted) . " 0",
			"$phase: $name: the standby's index has one live element per row and none deleted");
	}
}

# Insert the next $n source rows of every set, one per transaction or all
# in one statement.
sub insert_rows
{
	my ($n, $single) = @_;

	for my $name (@setnames)
	{
		my $s = $sets{$name};
		my ($from, $to) = ($s->{next}, $s->{next} + int($n / $s->{div}) - 1);
		my $sql;

		if ($single)
		{
			$sql = join '',
			  map { "INSERT INTO $s->{table} SELECT id, v FROM ${name}_src WHERE id = $_;\n" }
			  $from .. $to;
		}
		else
		{
			$sql =
			  "INSERT INTO $s->{table} SELECT id, v FROM ${name}_src WHERE id BETWEEN $from AND $to";
		}
		$primary->safe_psql('postgres', $sql);
		$s->{next} = $to + 1;
	}
}

check_replay('after CREATE INDEX');

for my $name (@setnames)
{
	my $s = $sets{$name};
	my $plan = $standby->safe_psql(
		'postgres', qq{SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM $s->{table} ORDER BY v $s->{op} '$s->{queries}[0][1]' LIMIT $K});
	like($plan, qr/Index Scan using $s->{index} on $s->{table}/,
		"$name: the standby answers with an index scan on $s->{index}");
	is( $standby->safe_psql('postgres',
			"SELECT quantizer FROM omen_index_info('$s->{index}')"),
		$s->{quantizer},
		"$name: the index navigates with codes of quantizer $s->{quantizer}");
}

# Queries on the standby while it replays: a background psql runs
# $n searches of every set, a drained one now and then, and must see no
# error (a search must never meet a page or an element that replay has
# not made valid yet).
my $scriptdir = PostgreSQL::Test::Utils::tempdir;

sub start_standby_reader
{
	my ($tag, $n) = @_;
	my $sql = "SET enable_seqscan = off; SET omen.ef_search = $EF_SEARCH;\n";
	my %r = (n => 0, out => '', err => '');

	for my $i (1 .. $n)
	{
		for my $name (@setnames)
		{
			my $s = $sets{$name};
			my $vec = $s->{queries}[ $i % $NQUERIES ][1];
			my $limit = $i % 10 ? $K : 100000;
			$sql .=
			  "SELECT count(*) FROM (SELECT id FROM $s->{table} ORDER BY v $s->{op} '$vec' LIMIT $limit) s;\n";
			$r{n}++;
		}
	}
	my $file = "$scriptdir/$tag.sql";
	open my $fh, '>', $file or die "could not write $file: $!";
	print $fh $sql;
	close $fh;
	$r{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $standby->connstr('postgres'), '-f', $file ],
		'<', \undef, '>', \$r{out}, '2>', \$r{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%r;
}

sub finish_standby_reader
{
	my ($r, $label) = @_;

	local $Test::Builder::Level = $Test::Builder::Level + 1;
	eval { $r->{h}->finish; };
	my @counts = split /\n/, $r->{out};
	my @short = grep { $_ < $K } @counts;
	ok( !$@ && $r->{h}->result == 0 && $r->{err} eq '' && @counts == $r->{n} && !@short,
		"$label: $r->{n} searches on the standby during replay all succeed")
	  or diag("exit: " . ($@ || $r->{h}->result) . ", " . scalar(@counts) . " of $r->{n} answered, "
		  . scalar(@short) . " with fewer than $K rows; stderr: $r->{err}");
}

my $reader = start_standby_reader('inserts', 150);
insert_rows($NSINGLE, 1);
finish_standby_reader($reader, 'single-row inserts');
check_replay('after single-row inserts');

insert_rows($NMULTI, 0);
check_replay('after a multi-row insert');

# Delete every tenth row, then VACUUM unlinks their elements and frees them.
$reader = start_standby_reader('vacuum', 100);
for my $name (@setnames)
{
	my $s = $sets{$name};
	my @gone = grep { $_ % 10 == 3 } 1 .. $s->{next} - 1;
	$s->{deleted}{$_} = 1 for @gone;
	$primary->safe_psql('postgres',
		"DELETE FROM $s->{table} WHERE id % 10 = 3; VACUUM $s->{table}");
}
finish_standby_reader($reader, 'DELETE and VACUUM');
check_replay('after DELETE and VACUUM');

insert_rows($NAFTER / 2, 1);
insert_rows($NAFTER / 2, 0);
check_replay('after inserts following the VACUUM');

# ---- unlogged tables: the init fork

# One column with dimensions, one without (the init fork's metapage then
# has no dimensions, and the first insert after a reset sets them).
$primary->safe_psql(
	'postgres', q{
CREATE UNLOGGED TABLE ul3 (id int, v vector(3));
CREATE INDEX ul3_v ON ul3 USING omen (v vector_l2_ops);
CREATE UNLOGGED TABLE ulany (id int, v vector);
CREATE INDEX ulany_v ON ulany USING omen (v vector_cosine_ops);
INSERT INTO ul3 SELECT i, ARRAY[i, i % 7, i % 13]::real[]::vector FROM generate_series(1, 500) i;
INSERT INTO ulany SELECT i, ARRAY[i % 11 + 1, i % 7, i % 13]::real[]::vector FROM generate_series(1, 500) i;
});

# Check that an unlogged table's index works: new rows, found through the
# index.  Returns nothing; one assertion per table.
sub check_unlogged
{
	my ($node, $when) = @_;

	local $Test::Builder::Level = $Test::Builder::Level + 1;

	is( $node->safe_psql(
			'postgres', q{
SELECT (SELECT count(*) FROM ul3) || ' ' || (SELECT count(*) FROM ulany);
SELECT elements || ' ' || dims || ' ' || pages FROM omen_index_info('ul3_v');
SELECT elements || ' ' || dims || ' ' || pages FROM omen_index_info('ulany_v');
}),
		"0 0\n0 3 1\n0 0 1",
		"$when: the unlogged tables are empty, their indexes just the init fork's metapage"
	);

	$node->safe_psql(
		'postgres', q{
INSERT INTO ul3 SELECT i, ARRAY[i, -i, 2 * i]::real[]::vector FROM generate_series(1, 50) i;
INSERT INTO ulany SELECT i, ARRAY[1, i, i * i]::real[]::vector FROM generate_series(1, 50) i;
});
	my $plans = $node->safe_psql(
		'postgres', q{SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM ul3 ORDER BY v <-> '[17,-17,34]' LIMIT 1;
EXPLAIN (COSTS OFF) SELECT id FROM ulany ORDER BY v <=> '[1,17,289]' LIMIT 1;});
	like($plans, qr/Index Scan using ul3_v on ul3.*Index Scan using ulany_v on ulany/s,
		"$when: queries on the unlogged tables use their omen indexes");
	is( $node->safe_psql(
			'postgres', q{SET enable_seqscan = off; SET omen.ef_search = 40;
SELECT id FROM ul3 ORDER BY v <-> '[17,-17,34]' LIMIT 1;
SELECT id FROM ulany ORDER BY v <=> '[1,17,289]' LIMIT 1;
SELECT count(*) FROM (SELECT id FROM ul3 ORDER BY v <-> '[0,0,0]' LIMIT 1000) s;
SELECT count(*) FROM (SELECT id FROM ulany ORDER BY v <=> '[1,0,0]' LIMIT 1000) s;
SELECT elements || ' ' || dims FROM omen_index_info('ulany_v');}),
		"17\n17\n50\n50\n50 3",
		"$when: the unlogged indexes take inserts and find them");
}

$primary->stop('immediate');
$primary->start;
check_unlogged($primary, 'after an immediate shutdown of the primary');

# ALTER TABLE SET LOGGED rebuilds an unlogged table's index as a logged
# relation, which must then reach the standby.
$primary->safe_psql(
	'postgres', q{
CREATE UNLOGGED TABLE ullog (id int, v vector(4));
INSERT INTO ullog SELECT i, ARRAY[i % 17, i % 5, i % 23, i]::real[]::vector FROM generate_series(1, 1000) i;
CREATE INDEX ullog_v ON ullog USING omen (v vector_l1_ops) WITH (m = 8, ef_construction = 32);
ALTER TABLE ullog SET LOGGED;
INSERT INTO ullog SELECT i, ARRAY[i % 17, i % 5, i % 23, i]::real[]::vector FROM generate_series(1001, 1200) i;
});

check_replay('after the primary restarted');

my $ullog = q{SET enable_seqscan = off; SET omen.ef_search = 40;
SELECT string_agg(id::text, ',') FROM (SELECT id FROM ullog ORDER BY v <+> '[15,0,8,100]' LIMIT 10) s;
SELECT string_agg(id::text, ',') FROM (SELECT id FROM ullog ORDER BY v <+> '[11,0,0,1150]' LIMIT 10) s;
SELECT count(*) FROM (SELECT id FROM ullog ORDER BY v <+> '[0,0,0,0]' LIMIT 100000) s;
SELECT elements || ' ' || pages FROM omen_index_info('ullog_v');};
is($standby->safe_psql('postgres', $ullog),
	$primary->safe_psql('postgres', $ullog),
	'an index rebuilt by ALTER TABLE SET LOGGED, and inserts into it, replay on the standby');
like($standby->safe_psql('postgres', $ullog),
	qr/^100,.*\n1150,.*\n1[12]\d\d\n1200 \d+$/,
	'on the standby, the index of the table set logged finds its rows');

# Promotion resets the standby's unlogged relations from their init forks,
# which only WAL brought there; then the standby's indexes must take writes.
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die "the standby did not leave recovery";
check_unlogged($standby, 'on the promoted standby');

for my $name (@setnames)
{
	my $s = $sets{$name};
	my $id = $s->{next};
	my ($got, $dist, $self) = split /[|\n]/,
	  $standby->safe_psql(
		'postgres', qq{SET enable_seqscan = off;
INSERT INTO $s->{table} SELECT id, v FROM ${name}_src WHERE id = $id;
SELECT id, v $s->{op} (SELECT v FROM ${name}_src WHERE id = $id) FROM $s->{table}
 ORDER BY v $s->{op} (SELECT v FROM ${name}_src WHERE id = $id) LIMIT 1;
SELECT v $s->{op} v FROM ${name}_src WHERE id = $id});
	# the distance of a vector to itself: 0, or minus its squared norm (<#>)
	ok($got == $id && abs($dist - $self) < 1e-6 * (1 + abs($self)),
		"$name: on the promoted standby, a new row is found through the replayed index")
	  or diag("got id $got at distance $dist, expected $id at $self");
}

# A scan pins no more than its share of the buffer pool: with
# shared_buffers = 1MB (128 buffers) two concurrent scans still work.
$standby->append_conf('postgresql.conf', 'shared_buffers = 1MB');
$standby->restart;
my @readers = map { start_standby_reader("pins$_", 50) } 1 .. 2;
finish_standby_reader($_, 'with shared_buffers = 1MB, two concurrent scans') for @readers;

# With 128 buffers the pages a scan pinned before are mostly evicted by the
# next call, so the buffer each block was last seen in (the hint scans pin
# through) is usually stale and often holds another block by then.  Rows
# must still come out distinct and in order of their exact distance.
for my $name (@setnames)
{
	my $s = $sets{$name};
	my @bad;
	for my $qi (1 .. 3)
	{
		my $vec = $s->{queries}[$qi][1];
		my @rows = split /\n/,
		  $standby->safe_psql(
			'postgres', qq{SET enable_seqscan = off; SET omen.ef_search = $EF_SEARCH;
SELECT id, v $s->{op} '$vec' FROM $s->{table} ORDER BY v $s->{op} '$vec' LIMIT 300});
		my (%seen, $prev);
		for my $row (@rows)
		{
			my ($id, $d) = split /\|/, $row;
			push @bad, "query $qi: id $id twice" if $seen{$id}++;
			push @bad, "query $qi: $d after $prev"
			  if defined $prev && $d < $prev - 1e-6 * (1 + abs($prev));
			$prev = $d;
		}
		push @bad, "query $qi: " . scalar(@rows) . " rows" if @rows != 300;
	}
	ok(!@bad, "$name: with shared_buffers = 1MB, 300 rows come out distinct and in exact distance order")
	  or diag(join("\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]));
}

$standby->stop;
$primary->stop;

done_testing();
