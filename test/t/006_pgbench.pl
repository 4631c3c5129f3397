# Copyright (c) omen contributors
#
# 006_pgbench.pl: a short mixed load (the CI version of bench/mixed_load).
#
# pgbench runs 4 clients for 25 seconds on a table of 2,000 16-d rows with
# an omen index: 70% 10-NN searches of random vectors, 10% inserts, 10%
# updates of the vector of a random row, 10% deletes of a random row, the
# scripts of bench/mixed/.  Autovacuum comes every second, so VACUUM
# (which unlinks deleted elements and frees their slots for inserts to
# reuse) runs during the load.
#
# No transaction may fail and no client abort; the server must log no
# error.  Then bench/mixed/check.sql vacuums and checks: the rows are the
# initial ones plus those inserted minus those deleted (by count and by
# id), each row's vector is that of its seed, the index has one element per
# row and no deleted one, every row is found first by an index scan for its
# own vector, recall@10 of 50 queries is at least 0.95, and (where omen has
# it) omen_verify(index, heapallindexed => true) finds no damage and no
# unreachable element.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;


my $repo = $ENV{OMEN_REPO};
plan skip_all => 'OMEN_REPO is not set (run this through test/run)'
  unless defined $repo && -r "$repo/bench/mixed/setup.sql";

my $ROWS = 2000;
my $DIMS = 16;
my $CLIENTS = 4;
my $SECONDS = 25;

sub mixed_file
{
	my ($name) = @_;
	return slurp_file("$repo/bench/mixed/$name");
}

my $node = PostgreSQL::Test::Cluster->new('mixed');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
autovacuum_naptime = 1s
log_autovacuum_min_duration = 0
max_connections = 30
});
$node->start;

my @vars = ('-v', "rows=$ROWS", '-v', "dims=$DIMS");
$node->safe_psql('postgres', mixed_file('setup.sql'), extra_params => \@vars);
is($node->safe_psql('postgres', 'SELECT count(*) FROM items'),
	$ROWS, "setup: $ROWS rows");

my $log_offset = -s $node->logfile;
$node->pgbench(
	"--no-vacuum --client=$CLIENTS --jobs=2 --time=$SECONDS -D dims=$DIMS -D idspan="
	  . int($ROWS * 1.25),
	0,
	[
		qr{number of transactions actually processed: [1-9]},
		qr{number of failed transactions: 0 \(0\.000%\)}
	],
	[qr{\A(?!.*(?:aborted|ERROR))}s],
	"pgbench: $CLIENTS clients, ${SECONDS}s of searches, inserts, updates and deletes",
	{
		'006_search.sql@70' => mixed_file('search.sql'),
		'006_insert.sql@10' => mixed_file('insert.sql'),
		'006_update.sql@10' => mixed_file('update.sql'),
		'006_delete.sql@10' => mixed_file('delete.sql'),
	});

# all kinds of change happened, and VACUUM ran during the load
my ($inserted, $updated, $deleted, $autovacuums) = split /\|/,
  $node->safe_psql(
	'postgres', q{
	SELECT count(*) FILTER (WHERE op = 'i'), count(*) FILTER (WHERE op = 'u'),
		count(*) FILTER (WHERE op = 'd'),
		(SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'items')
	FROM mixed_log});
note "inserted $inserted, updated $updated, deleted $deleted rows; $autovacuums autovacuums";
ok($inserted > 0 && $updated > 0 && $deleted > 0,
	'the load inserted, updated and deleted rows');
ok($autovacuums > 0, 'autovacuum vacuumed the table during the load');

my $log = slurp_file($node->logfile, $log_offset);
my @errors = grep { !/canceling autovacuum task/ }
  ($log =~ /^.*(?:ERROR|PANIC|FATAL|TRAP):.*$/mg);
is(scalar(@errors), 0, 'the server logged no error during the load')
  or diag join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]);

# the checks of bench/mixed/check.sql, one line each: name|ok|detail
my $checks = $node->safe_psql('postgres', mixed_file('check.sql'),
	extra_params => [ @vars, '-v', 'ef=400' ]);
my $nchecks = 0;
foreach my $line (split /\n/, $checks)
{
	my ($name, $ok, $detail) = split /\|/, $line, 3;
	next unless defined $detail;
	$nchecks++;
  SKIP:
	{
		skip "$name: $detail", 1 if $ok eq '';
		ok($ok eq 't', "$name: $detail");
	}
}
cmp_ok($nchecks, '>=', 6, 'check.sql ran all its checks');

$node->stop;
done_testing();
