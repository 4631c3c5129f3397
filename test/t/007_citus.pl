# Copyright (c) omen contributors
#
# 007_citus.pl: omen indexes on a Citus-distributed table.
#
# A coordinator and two workers (shared_preload_libraries = 'citus', each
# on a local TCP port), the extensions citus and omen on all three, the
# workers added with citus_add_node.  items (id int, v vector(128)) is
# distributed by id over 8 shards and loaded with the BIGANN rows through
# the coordinator; CREATE INDEX ... USING omen on it makes one omen index
# per shard.  A plain local copy on the coordinator gives the exact answers.
#
# Checks:
#  - the index exists on every shard, and the shards' k-NN queries use it,
#    both on a worker (EXPLAIN on a shard table) and through the coordinator
#    (citus.explain_all_tasks: every task an "Index Scan using");
#  - ORDER BY v <-> q LIMIT 10 through the coordinator (Citus pushes the
#    ORDER BY ... LIMIT to every shard and merges) has recall@10 >= 0.95
#    against the exact answers, over the 100 queries;
#  - omen.ef_search reaches the shards: with citus.propagate_set_commands =
#    'local', SET LOCAL omen.ef_search = 1 inside a transaction gives a
#    measurably lower recall than SET LOCAL omen.ef_search = 200;
#  - rows inserted through the coordinator are found by their own vector;
#  - citus_move_shard_placement (block_writes) of a shard to the other
#    worker: its omen index exists on the target (and no longer on the
#    source), is used there, and the k-NN answers are unchanged.
#
# Skips when Citus is not installed (test/run builds it as root, see
# omen_install_citus in test/lib.sh).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $data = $ENV{OMEN_TEST_DATA};
plan skip_all => 'OMEN_TEST_DATA is not set (run this through test/run)'
  unless defined $data && -r "$data/bigann_base.tsv";

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
plan skip_all =>
  "Citus is not installed ($sharedir/extension/citus.control is missing; "
  . 'test/run builds it as root from ../shared/vendor/citus-13.0.5.tar.gz, see omen_install_citus in test/lib.sh)'
  unless -f "$sharedir/extension/citus.control";

my $K = 10;
my $NSHARDS = 8;
my $NINSERT = 20;    # rows inserted after the build: the first query vectors
my $t_start = time;

# ---- the cluster: a coordinator and two workers

my %node;
for my $name (qw(coord worker1 worker2))
{
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	# Citus reaches the nodes by host and port: listen on localhost too.
	# The shards are small (about 1,240 rows): left to costs, the planner
	# answers some with a sequential scan and a sort (exact, and about as
	# fast at this size); enable_seqscan = off makes every shard use its
	# index, as shards of a realistic size do anyway.
	$n->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'citus'
listen_addresses = 'localhost'
citus.node_conninfo = 'sslmode=disable'
citus.enable_statistics_collection = off
shared_buffers = 32MB
maintenance_work_mem = 64MB
max_wal_size = 1GB
fsync = off
log_statement = none
enable_seqscan = off
});
	$n->start;
	$n->safe_psql('postgres', 'CREATE EXTENSION citus; CREATE EXTENSION omen CASCADE;');
	$node{$name} = $n;
}
my $coord = $node{coord};
my %by_port = map { $node{$_}->port => $node{$_} } qw(worker1 worker2);

$coord->safe_psql(
	'postgres', sprintf(
		q{SELECT citus_set_coordinator_host('localhost', %d);
SELECT citus_add_node('localhost', %d);
SELECT citus_add_node('localhost', %d);},
		$coord->port, $node{worker1}->port, $node{worker2}->port));
is($coord->safe_psql('postgres', 'SELECT count(*) FROM citus_get_active_worker_nodes()'),
	'2', 'the coordinator has two active workers');

# ---- data: distributed items, a local exact copy, the queries

(my $qdata = $data) =~ s/'/''/g;
my $t0 = time;
$coord->safe_psql(
	'postgres', qq{
CREATE TABLE items (id int, v vector(128));
SELECT create_distributed_table('items', 'id', shard_count => $NSHARDS);
COPY items FROM '$qdata/bigann_base.tsv';
CREATE TABLE local_items (id int, v vector(128));
COPY local_items FROM '$qdata/bigann_base.tsv';
CREATE TABLE queries (id int, v vector(128));
COPY queries FROM '$qdata/bigann_query.tsv';
});
my $t_load = time - $t0;
my $nrows = $coord->safe_psql('postgres', 'SELECT count(*) FROM local_items');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM items'),
	$nrows, "all $nrows rows are in the distributed table");

$t0 = time;
$coord->safe_psql('postgres',
	'CREATE INDEX items_v ON items USING omen (v vector_l2_ops) WITH (m = 16, ef_construction = 64)');
my $t_build = time - $t0;
note(sprintf('load %.1f s, CREATE INDEX on the distributed table %.1f s', $t_load, $t_build));

# The shards: [shardid, shard table name, worker port]
my @shards = map { [ split /\|/ ] } split /\n/,
  $coord->safe_psql(
	'postgres', q{SELECT shardid, shard_name, nodeport FROM citus_shards
 WHERE table_name = 'items'::regclass ORDER BY shardid});
is(scalar(@shards), $NSHARDS, "items has $NSHARDS shards");
is( join(',', sort { $a <=> $b } keys %{ { map { $_->[2] => 1 } @shards } }),
	join(',', sort { $a <=> $b } keys %by_port),
	'the shards are on both workers');

# Does the index of shard table $tbl exist on node $n (with access method omen)?
sub shard_index
{
	my ($n, $tbl) = @_;
	# Citus hides shards from pg_class queries unless told not to
	return $n->safe_psql(
		'postgres', qq{SET citus.override_table_visibility = off;
SELECT string_agg(c.relname || ':' || a.amname, ',')
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
 WHERE i.indrelid = to_regclass('$tbl')});
}

my @noindex = grep { shard_index($by_port{ $_->[2] }, $_->[1]) !~ /^items_v_\d+:omen$/ } @shards;
is(join(',', map { $_->[1] } @noindex), '', 'every shard has its omen index, on its worker');

my @queries = map { [ split /\|/ ] } split /\n/,
  $coord->safe_psql('postgres', 'SELECT id, v FROM queries ORDER BY id');
is(scalar(@queries), 100, '100 queries');

# ---- (a) the plans

my ($sid, $stbl, $sport) = @{ $shards[0] };
my $qv = $queries[0][1];
like(
	$by_port{$sport}->safe_psql(
		'postgres', "EXPLAIN (COSTS OFF) SELECT id FROM $stbl ORDER BY v <-> '$qv' LIMIT $K"),
	qr/Index Scan using items_v_$sid on $stbl/,
	"on its worker, a k-NN query on shard $stbl uses the shard's omen index");

my $plan = $coord->safe_psql(
	'postgres', qq{SET citus.explain_all_tasks = on;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> '$qv' LIMIT $K});
my $nscans = () = $plan =~ /Index Scan using items_v_\d+ on items_\d+/g;
is($nscans, $NSHARDS,
	"through the coordinator, each of the $NSHARDS tasks is an index scan on the shard's omen index")
  or diag($plan);
like($plan, qr/\A\s*Limit\s+->\s+Sort\s.*?->\s+Custom Scan \(Citus Adaptive\)/s,
	'the coordinator merges the shards\' top-k (Limit and Sort over the Citus scan)')
  or diag(join("\n", (split /\n/, $plan)[0 .. 5]));

# ---- (b) recall through the coordinator

# k nearest ids of every query: { qid => [ids] }.  $pre runs first in the
# same session; with $txn all queries run in one transaction.
sub knn
{
	my ($n, $table, $pre, $txn) = @_;
	my $sql = ($txn ? "BEGIN;\n" : '') . ($pre // '');
	$sql .= "SELECT $_->[0], id FROM $table ORDER BY v <-> '$_->[1]' LIMIT $K;\n" for @queries;
	$sql .= "COMMIT;\n" if $txn;
	my %res;
	for my $line (split /\n/, $n->safe_psql('postgres', $sql))
	{
		my ($qid, $id) = split /\|/, $line;
		push @{ $res{$qid} }, $id;
	}
	return \%res;
}

sub recall
{
	my ($got, $want) = @_;
	my ($hit, $all) = (0, 0);
	for my $qid (keys %$want)
	{
		my %w = map { $_ => 1 } @{ $want->{$qid} };
		$hit += grep { $w{$_} } @{ $got->{$qid} // [] };
		$all += @{ $want->{$qid} };
	}
	return $all ? $hit / $all : 0;
}

my $exact = knn($coord, 'local_items',
	"SET enable_indexscan = off; SET enable_bitmapscan = off;\n");
$t0 = time;
my $dist = knn($coord, 'items');
my $t_q = time - $t0;
my $r_default = recall($dist, $exact);
note(sprintf('through the coordinator, default ef_search: recall@%d %.3f, 100 queries in %.2f s',
		$K, $r_default, $t_q));
my @short = grep { @{ $dist->{$_} } != $K } keys %$dist;
ok(keys(%$dist) == 100 && !@short, "through the coordinator, every query returns $K rows");
cmp_ok($r_default, '>=', 0.95,
	"through the coordinator, recall\@$K >= 0.95 against a sequential scan (100 queries)");

# ---- (c) omen.ef_search reaches the shards with SET LOCAL

my $prop = "SET citus.propagate_set_commands = 'local';\n";
my $lo = knn($coord, 'items', $prop . "SET LOCAL omen.ef_search = 1;\n", 1);
my $hi = knn($coord, 'items', $prop . "SET LOCAL omen.ef_search = 200;\n", 1);
my ($r_lo, $r_hi) = (recall($lo, $exact), recall($hi, $exact));
note(sprintf('SET LOCAL omen.ef_search = 1: recall %.3f; = 200: recall %.3f', $r_lo, $r_hi));
cmp_ok($r_hi, '>=', 0.98, 'with SET LOCAL omen.ef_search = 200 recall is at least 0.98');
cmp_ok($r_hi - $r_lo, '>=', 0.02,
	'SET LOCAL omen.ef_search = 1 lowers recall measurably: the setting reaches the shards');
# without propagation the shards keep their default: the same answers as before
my $noprop = knn($coord, 'items', "SET citus.propagate_set_commands = 'none';\nSET LOCAL omen.ef_search = 1;\n", 1);
is(recall($noprop, $exact), $r_default,
	'without citus.propagate_set_commands the shards keep their own ef_search');

# ---- (d) rows inserted through the coordinator are found

my $newid = 1_000_000;
$coord->safe_psql('postgres',
	"INSERT INTO items SELECT $newid + id, v FROM queries WHERE id <= $NINSERT;"
	  . "INSERT INTO local_items SELECT $newid + id, v FROM queries WHERE id <= $NINSERT;");
sub find_inserted
{
	my $sql = '';
	$sql .= "SELECT id FROM items ORDER BY v <-> '$queries[$_ - 1][1]' LIMIT 1;\n" for 1 .. $NINSERT;
	return $coord->safe_psql('postgres', $sql);
}
my $want_inserted = join("\n", map { $newid + $_ } 1 .. $NINSERT);
is(find_inserted(), $want_inserted,
	"$NINSERT rows inserted through the coordinator are each found first by their own vector");

# ---- (e) a shard moved to the other worker keeps its index

my $before = knn($coord, 'items');
$exact = knn($coord, 'local_items',
	"SET enable_indexscan = off; SET enable_bitmapscan = off;\n");
my $r_before = recall($before, $exact);

my ($dst) = grep { $_ != $sport } keys %by_port;
$t0 = time;
$coord->safe_psql('postgres',
	"SELECT citus_move_shard_placement($sid, 'localhost', $sport, 'localhost', $dst, shard_transfer_mode => 'block_writes')"
);
my $t_move = time - $t0;
note(sprintf('citus_move_shard_placement of shard %d (%s): %.1f s', $sid, $stbl, $t_move));
is($coord->safe_psql('postgres', "SELECT nodeport FROM citus_shards WHERE shardid = $sid"),
	$dst, "shard $sid is now on the other worker");
# the source's copy is dropped by Citus's deferred cleanup
$coord->safe_psql('postgres', 'CALL citus_cleanup_orphaned_resources()');
is(shard_index($by_port{$dst}, $stbl), "items_v_$sid:omen",
	'the moved shard has its omen index on the target worker');
is($by_port{$sport}->safe_psql('postgres', "SELECT to_regclass('$stbl') IS NULL"),
	't', 'the shard is gone from the source worker');
like(
	$by_port{$dst}->safe_psql(
		'postgres', "EXPLAIN (COSTS OFF) SELECT id FROM $stbl ORDER BY v <-> '$qv' LIMIT $K"),
	qr/Index Scan using items_v_$sid on $stbl/,
	'on the target worker, a k-NN query on the moved shard uses its omen index');

my $after = knn($coord, 'items');
my $r_after = recall($after, $exact);
my $same = recall($after, $before);
note(sprintf('after the move: recall %.3f (before %.3f), %.3f of the ids as before',
		$r_after, $r_before, $same));
cmp_ok($same, '>=', 0.98, 'after the move, the k-NN answers are (nearly) the same as before');
cmp_ok($r_after, '>=', 0.95, 'after the move, recall@10 is still >= 0.95');
is(find_inserted(), $want_inserted, 'after the move, the inserted rows are still found');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM items'),
	$nrows + $NINSERT, 'no row was lost in the move');

note(sprintf('total %.1f s', time - $t_start));
$_->stop for values %node;
done_testing();
