# Copyright (c) omen contributors
#
# 004_corruption.pl: damaged index pages are reported, never crash the
# server; and an index survives pg_dump and pg_restore.
#
# Each case stops the server, writes bytes into the index file (a fresh
# copy of the pristine file each time), starts the server again and checks
# what omen_verify() and ordinary statements make of it:
#
#  (b) a neighbour number far past the last element, in element 0's slot:
#      omen_verify() names the block and slot; searches, inserts and VACUUM
#      either work or fail with ERRCODE_INDEX_CORRUPTED;
#  (c) a graph page with a wrong page id, a directory page of the wrong
#      type, a metapage with a wrong magic number;
#  (d) a live element marked deleted: only heapallindexed notices the row
#      missing from the index, and names its heap TID;
#  (e) damage that searches once followed: a bq metapage whose padded
#      dimensions disagree with its settings (OmenRotate crashed on it), a
#      live element whose heap TID has block number 0xFFFFFFFF (P_NEW, so
#      the executor extended the table while it read);
#  (a) a metapage of an unknown format version: searches and omen_verify()
#      refuse it with the REINDEX hint, and REINDEX repairs it.
#
# After each case the server must still answer, with no backend killed by
# a signal: the postmaster's and the checkpointer's start times unchanged,
# no "terminated by signal" in the log.
#
#  (g) omen_verify() refuses another session's temporary index;
#  (f) pg_dump (custom format) of a database with omen indexes, restored
#      into a new database: same index definitions, omen_verify() clean,
#      same search results.
#
# Offsets come from the page layout in src/omen.h: block 0 is the
# metapage, whose OmenMetaPageData starts at byte 24 (the page header,
# MAXALIGNed); slots start at byte 24 of a graph page; the special space
# (16 bytes) ends the page, its page id at byte 10 of it.

use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $data = $ENV{OMEN_TEST_DATA};
plan skip_all => 'OMEN_TEST_DATA is not set (run this through test/run)'
  unless defined $data && -r "$data/bigann_base.tsv";
(my $qdata = $data) =~ s/'/''/g;

my $NROWS = 2000;

# ---- page layout (src/omen.h)

my $BLCKSZ = 8192;
my $HDR = 24;                  # MAXALIGN(SizeOfPageHeaderData)
my $SPECIAL = $BLCKSZ - 16;    # MAXALIGN(sizeof(OmenPageOpaqueData))
my $DIR_ENTRIES = ($BLCKSZ - $HDR - 16) / 4;

sub read_bytes
{
	my ($file, $off, $len) = @_;
	open my $fh, '<:raw', $file or die "open $file: $!";
	seek($fh, $off, 0) or die "seek: $!";
	my $got = read($fh, my $buf, $len);
	die "short read of $file at $off" unless defined $got && $got == $len;
	close $fh;
	return $buf;
}

sub write_bytes
{
	my ($file, $off, $bytes) = @_;
	open my $fh, '+<:raw', $file or die "open $file: $!";
	seek($fh, $off, 0) or die "seek: $!";
	print $fh $bytes or die "write: $!";
	close $fh or die "close: $!";
	return;
}

# The metapage fields we need (OmenMetaPageData, in order)
sub read_meta
{
	my ($file) = @_;
	my $b = read_bytes($file, $HDR, 2896);
	my %m;
	@m{
		qw(magic version dims metric elemtype m efc quantizer vectors
		  slotsize spp codesize K C G paddims rotseed codegen centroid
		  nextElem nextents vhint uhint nsegments ndirpages)
	  }
	  = unpack('L L l s s s s s s s s l l l l l L L L L L L L S S', $b);
	$m{entry} = unpack('L', substr($b, 80, 4));
	$m{dirpages} = [ unpack('L512', substr($b, 848, 2048)) ];
	return \%m;
}

# First block of extent x, from the directory
sub extent_start
{
	my ($file, $m, $x) = @_;
	my $d = $m->{dirpages}[ int($x / $DIR_ENTRIES) ];
	return unpack('L',
		read_bytes($file, $d * $BLCKSZ + $HDR + 4 * ($x % $DIR_ENTRIES), 4));
}

# Graph block, slot number and file offset of element e's slot
sub slot_loc
{
	my ($file, $m, $e) = @_;
	my $i = $e % $m->{K};
	my $blk =
	  extent_start($file, $m, int($e / $m->{K})) + $m->{C} + int($i / $m->{spp});
	my $s = $i % $m->{spp};
	return ($blk, $s, $blk * $BLCKSZ + $HDR + $m->{slotsize} * $s);
}

# ---- the cluster

my $node = PostgreSQL::Test::Cluster->new('corrupt');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
autovacuum = off
restart_after_crash = on
log_statement = none
});
$node->start;

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION omen CASCADE;
CREATE TABLE src (id int PRIMARY KEY, v vector(128));
COPY src FROM '$qdata/bigann_base.tsv';
CREATE TABLE q (id int PRIMARY KEY, v vector(128));
COPY q FROM '$qdata/bigann_query.tsv' WHERE id <= 10;
CREATE TABLE t (id int PRIMARY KEY, v vector(128));
INSERT INTO t SELECT id, v FROM src WHERE id <= $NROWS;
CREATE INDEX t_idx ON t USING omen (v vector_l2_ops) WITH (m = 16, ef_construction = 64);
CREATE TABLE tb (id int PRIMARY KEY, v vector(128));
INSERT INTO tb SELECT id, v FROM src WHERE id <= $NROWS;
CREATE INDEX tb_idx ON tb USING omen (v) WITH (quantizer = 'bq');
CHECKPOINT;
});

is( $node->safe_psql(
		'postgres',
		'SELECT elements, deleted, unreachable FROM omen_verify(\'t_idx\', true)'),
	"$NROWS|0|0",
	'the pristine index verifies clean');

my %file;
my %pristine;
my $keep = PostgreSQL::Test::Utils::tempdir;
for my $idx (qw(t_idx tb_idx))
{
	$file{$idx} = $node->data_dir . '/'
	  . $node->safe_psql('postgres', "SELECT pg_relation_filepath('$idx')");
}
$node->stop;
for my $idx (keys %file)
{
	$pristine{$idx} = "$keep/$idx.pristine";
	copy($file{$idx}, $pristine{$idx}) or die "copy: $!";
}
my $meta = read_meta($pristine{t_idx});
ok($meta->{magic} == 0x4F4D454E && $meta->{version} == 1,
	'the metapage is where src/omen.h says');
is($meta->{nextElem}, $NROWS, 'the metapage counts every row');
$node->start;

# ---- helpers

my ($start_time, $ckpt_start, $log_offset);

# Remember how the server looks now, to tell later if anything restarted
sub baseline
{
	$start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
	$ckpt_start = $node->safe_psql('postgres',
		"SELECT backend_start FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
	$log_offset = -s $node->logfile;
	return;
}

# Stop, put the pristine file back, damage it, start
sub corrupt
{
	my ($idx, $damage) = @_;
	$node->stop;
	copy($pristine{$idx}, $file{$idx}) or die "copy: $!";
	$damage->($file{$idx});
	$node->start;
	baseline();
	return;
}

# Run SQL with error codes in messages; returns (ret, stdout, stderr)
sub run_sql
{
	my ($sql) = @_;
	return $node->psql(
		'postgres', "\\set VERBOSITY verbose\n$sql",
		timeout => 180,
		on_error_stop => 1);
}

# Does this statement either work or fail with ERRCODE_INDEX_CORRUPTED?
sub works_or_corrupted
{
	my ($label, $sql) = @_;
	my ($ret, $out, $err) = run_sql($sql);
	ok($ret == 0 || ($ret == 3 && $err =~ /ERROR:  XX002: /),
		"$label: works or reports corruption")
	  or diag("exit $ret: $err");
	return ($ret, $err);
}

# The server answers and nothing restarted since the last baseline
sub server_ok
{
	my ($label) = @_;
	is($node->safe_psql('postgres', 'SELECT 1'), '1', "$label: the server answers");
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, "$label: the postmaster did not restart");
	is( $node->safe_psql(
			'postgres',
			"SELECT backend_start FROM pg_stat_activity WHERE backend_type = 'checkpointer'"),
		$ckpt_start,
		"$label: no crash and reinitialization");
	unlike(
		slurp_file($node->logfile, $log_offset),
		qr/terminated by signal|PANIC/,
		"$label: no backend was killed by a signal");
	return;
}

# Searches, an insert, a delete and VACUUM against a damaged index.  The
# writes are rolled back (VACUUM then removes the inserted rows), so that
# the table keeps the rows the pristine index holds.
sub exercise
{
	my ($label, $table) = @_;
	works_or_corrupted("$label, search $_",
		"SET enable_seqscan = off;\n"
		  . "SELECT id FROM $table ORDER BY v <-> (SELECT v FROM q WHERE id = $_) LIMIT 10;")
	  for (1 .. 5);
	works_or_corrupted("$label, drained search",
		"SET enable_seqscan = off;\n"
		  . "SELECT count(*) FROM (SELECT id FROM $table ORDER BY v <-> (SELECT v FROM q WHERE id = 6)) s;"
	);
	# rolled back, so that the table keeps the rows of the pristine index
	works_or_corrupted("$label, insert and delete",
		"BEGIN;\n"
		  . "INSERT INTO $table SELECT id, v FROM src WHERE id > $NROWS AND id <= $NROWS + 20;\n"
		  . "DELETE FROM $table WHERE id % 50 = 0;\n"
		  . "ROLLBACK;");
	works_or_corrupted("$label, VACUUM", "VACUUM $table;");
	return;
}

baseline();

# ---- (b) a neighbour number past the last element

{
	my ($blk, $slotno, $off) = slot_loc($pristine{t_idx}, $meta, 0);
	my $n0 = unpack('C', read_bytes($pristine{t_idx}, $off + 7, 1));
	ok($n0 > 0, "(b) element 0 has neighbours ($n0)");
	corrupt('t_idx',
		sub { write_bytes($_[0], $off + 28, pack('L', 0xFFFFFFF0)); });
	my ($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('t_idx');");
	like(
		$err,
		qr/ERROR:  XX002: index "t_idx" has an invalid neighbour list/,
		'(b) omen_verify reports the neighbour list');
	like(
		$err,
		qr/DETAIL:  Block $blk, slot $slotno \(element 0\) lists element 4294967280 at level 0, but only $NROWS elements were allocated\./,
		'(b) omen_verify names the block, the slot and the element');
	exercise('(b)', 't');
	server_ok('(b)');
}

# ---- (c) wrong page id, wrong page type, wrong magic

{
	my ($blk) = slot_loc($pristine{t_idx}, $meta, 0);
	corrupt('t_idx',
		sub { write_bytes($_[0], $blk * $BLCKSZ + $SPECIAL + 14, pack('S', 0x1234)); });
	my ($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('t_idx');");
	like(
		$err,
		qr/ERROR:  XX002: index "t_idx" has an invalid page\nDETAIL:  Block $blk has page id 0x1234 instead of 0xFF9A\./,
		'(c) omen_verify reports a graph page with a wrong page id');
	exercise('(c) page id', 't');
	server_ok('(c) page id');

	my $dir = $meta->{dirpages}[0];
	corrupt('t_idx',
		sub { write_bytes($_[0], $dir * $BLCKSZ + $SPECIAL + 4, pack('S', 3)); });
	($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('t_idx');");
	like(
		$err,
		qr/ERROR:  XX002: index "t_idx" has an invalid (?:page|extent directory)\nDETAIL:  (?:Directory page 0 is )?[Bb]lock $dir\b/,
		'(c) omen_verify reports the directory page of the wrong type');
	($ret, $out, $err) = run_sql(
		"SET enable_seqscan = off;\nSELECT id FROM t ORDER BY v <-> (SELECT v FROM q WHERE id = 1) LIMIT 10;"
	);
	like($err, qr/ERROR:  XX002: index "t_idx" contains a page of the wrong type/,
		'(c) a search refuses the directory page');
	exercise('(c) page type', 't');
	server_ok('(c) page type');

	corrupt('t_idx', sub { write_bytes($_[0], $HDR, pack('L', 0x12345678)); });
	($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('t_idx');");
	like(
		$err,
		qr/ERROR:  XX002: index "t_idx" is not an omen index\nDETAIL:  The metapage has magic number 0x12345678\./,
		'(c) omen_verify reports a wrong magic number');
	exercise('(c) magic', 't');
	server_ok('(c) magic');
}

# ---- (d) a live element marked deleted: only heapallindexed sees it

{
	my $e = 10;
	my ($blk, $slotno, $off) = slot_loc($pristine{t_idx}, $meta, $e);
	my ($hi, $lo, $posid) = unpack('S S S', read_bytes($pristine{t_idx}, $off + 8, 6));
	my $hblk = ($hi << 16) | $lo;
	corrupt('t_idx', sub { write_bytes($_[0], $off + 4, pack('C', 0x03)); });
	is( $node->safe_psql('postgres',
			"SELECT elements, deleted FROM omen_verify('t_idx')"),
		($NROWS - 1) . '|1',
		'(d) without heapallindexed, a deleted element is no damage');
	my ($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('t_idx', true);");
	like(
		$err,
		qr/ERROR:  XX002: heap tuple \($hblk,$posid\) from table "t" is not in index "t_idx"/,
		'(d) heapallindexed names the row missing from the index');
	like($err, qr/DETAIL:  1 of the table's $NROWS rows with a value are missing from the index\./,
		'(d) and counts the missing rows');
	like($err, qr/HINT:  Run REINDEX INDEX t_idx\./, '(d) with the REINDEX hint');
	server_ok('(d)');
}

# ---- (e) damage searches once followed

{
	# padded dimensions of a bq index: 128 -> 0
	my $bq = read_meta($pristine{tb_idx});
	is($bq->{paddims}, 128, '(e) the bq index pads 128 dimensions to 128');
	corrupt('tb_idx', sub { write_bytes($_[0], $HDR + 44, pack('l', 0)); });
	my ($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('tb_idx');");
	like(
		$err,
		qr/ERROR:  XX002: index "tb_idx" has an invalid metapage\nDETAIL:  The metapage has codes of \d+ bytes, 0 padded dimensions/,
		'(e) omen_verify reports padded dimensions that disagree with the settings');
	($ret, $out, $err) = run_sql(
		"SET enable_seqscan = off;\nSELECT id FROM tb ORDER BY v <-> (SELECT v FROM q WHERE id = 1) LIMIT 10;"
	);
	like(
		$err,
		qr/ERROR:  XX002: index "tb_idx" has an invalid metapage/,
		'(e) a search refuses padded dimensions that disagree with the settings')
	  or diag("exit $ret: $err");
	server_ok('(e) padded dimensions');

	# a heap TID with block InvalidBlockNumber (P_NEW)
	my ($blk, $slotno, $off) = slot_loc($pristine{t_idx}, $meta, 0);
	my ($hi, $lo, $posid) = unpack('S S S', read_bytes($pristine{t_idx}, $off + 8, 6));
	my $ctid = '(' . (($hi << 16) | $lo) . ",$posid)";
	corrupt('t_idx',
		sub { write_bytes($_[0], $off + 8, pack('S S S', 0xFFFF, 0xFFFF, 1)); });
	($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('t_idx');");
	like(
		$err,
		qr/ERROR:  XX002: index "t_idx" has an invalid element slot\nDETAIL:  Block $blk, slot $slotno \(element 0\) has heap TID \(4294967295,1\)/,
		'(e) omen_verify reports a heap TID with an invalid block number');
	my $size = $node->safe_psql('postgres', "SELECT pg_relation_size('t')");
	($ret, $out, $err) = run_sql(
		"SET enable_seqscan = off;\nSELECT id FROM t ORDER BY v <-> (SELECT v FROM t WHERE ctid = '$ctid') LIMIT 10;"
	);
	like(
		$err,
		qr/ERROR:  XX002: index "t_idx" has an invalid heap TID\nDETAIL:  Element 0 points to \(4294967295,1\)\./,
		'(e) a search refuses the heap TID');
	is($node->safe_psql('postgres', "SELECT pg_relation_size('t')"),
		$size, '(e) a search does not extend the table');
	server_ok('(e) heap TID');
}

# ---- (a) a metapage of an unknown format version

{
	corrupt('t_idx', sub { write_bytes($_[0], $HDR + 4, pack('L', 99)); });
	my $refusal =
	  qr/ERROR:  0A000: index "t_idx" has on-disk format version 99, but this build of omen reads version 1\n(?:LOCATION: [^\n]*\n)?HINT:  Run REINDEX INDEX t_idx\./;
	my ($ret, $out, $err) = run_sql(
		"SET enable_seqscan = off;\nSELECT id FROM t ORDER BY v <-> (SELECT v FROM q WHERE id = 1) LIMIT 10;"
	);
	like($err, $refusal, '(a) a search refuses another format version, with the REINDEX hint');
	($ret, $out, $err) = run_sql("SELECT * FROM omen_verify('t_idx');");
	like($err, $refusal, '(a) so does omen_verify');
	($ret, $out, $err) =
	  run_sql("INSERT INTO t SELECT id, v FROM src WHERE id = $NROWS + 100;");
	like($err, $refusal, '(a) so does an insert');
	server_ok('(a)');
	$node->safe_psql('postgres', 'REINDEX INDEX t_idx');
	is( $node->safe_psql(
			'postgres',
			"SELECT elements = (SELECT count(*) FROM t), deleted FROM omen_verify('t_idx', true)"),
		't|0',
		'(a) REINDEX makes it whole');
}

# ---- (g) another session's temporary index is refused

{
	my $bg = $node->background_psql('postgres');
	$bg->query_safe(
		'CREATE TEMP TABLE tt AS SELECT id, v FROM src WHERE id <= 100; CREATE INDEX tt_idx ON tt USING omen (v);'
	);
	my $oid = $bg->query_safe("SELECT 'tt_idx'::regclass::oid");
	chomp $oid;
	my ($ret, $out, $err) = run_sql("SELECT * FROM omen_verify($oid);");
	like(
		$err,
		qr/ERROR:  0A000: cannot access temporary indexes of other sessions/,
		'(g) omen_verify refuses a temporary index of another session');
	is($bg->query_safe("SELECT elements FROM omen_verify('tt_idx', true)"),
		'100', '(g) its own session verifies it');
	$bg->quit;
}

# ---- (f) pg_dump and pg_restore

{
	$node->safe_psql(
		'postgres', q{
REINDEX INDEX tb_idx;
CREATE INDEX t_sq8 ON t USING omen (v vector_l2_ops) WITH (quantizer = 'sq8', m = 8, ef_construction = 40);
CREATE INDEX t_cos ON t USING omen ((v::halfvec(128)) halfvec_cosine_ops) WHERE id % 2 = 0;
});
	my $dump = "$keep/omen.dump";
	$node->command_ok(
		[ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
		'(f) pg_dump -Fc');
	$node->safe_psql('postgres', 'CREATE DATABASE restored');
	$node->command_ok(
		[ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
		'(f) pg_restore into a new database');

	my $defs = q{SELECT string_agg(indexdef, E'\n' ORDER BY indexname) FROM pg_indexes
		WHERE indexdef LIKE '%USING omen%'};
	my $before = $node->safe_psql('postgres', $defs);
	like($before, qr/t_sq8 ON public\.t USING omen \(v\) WITH \(quantizer=sq8, m='8', ef_construction='40'\)/,
		'(f) the options are in the index definition');
	is($node->safe_psql('restored', $defs), $before, '(f) the same omen indexes, defined alike');

	for my $idx (qw(t_idx t_sq8 t_cos tb_idx))
	{
		is( $node->safe_psql(
				'restored',
				"SELECT elements = (SELECT count(*) FROM ONLY "
				  . ($idx eq 'tb_idx' ? 'tb' : 't')
				  . ($idx eq 't_cos' ? ' WHERE id % 2 = 0' : '')
				  . "), deleted, unreachable = 0 FROM omen_verify('$idx', true)"),
			't|0|t',
			"(f) $idx verifies clean after the restore");
	}

	# graphs built again differ; with a wide search both are exact here
	my $knn = q{SET enable_seqscan = off; SET omen.ef_search = 400;
		SELECT string_agg(r, ' ' ORDER BY q.id) FROM q, LATERAL (
			SELECT string_agg(t.id::text, ',') AS r FROM (
				SELECT id FROM t ORDER BY v <-> q.v LIMIT 10) t) s};
	my $res = $node->safe_psql('postgres', $knn);
	is($node->safe_psql('restored', $knn), $res, '(f) the same search results');
}

$node->stop;

done_testing();
