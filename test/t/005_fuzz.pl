# Copyright (c) omen contributors
#
# 005_fuzz.pl: random damage to index pages never crashes or hangs the
# server, and omen_verify() sees whatever statements trip over.
#
# Eight small indexes of different kinds (levels, quantizers, vectors in the
# index or the table, halfvec with zero vectors under cosine, several
# segments, freed and reused slots, inner product) are built once and
# their files kept.  Each round stops the server, puts every pristine file
# back, damages each index in one place (a bit, a byte, or a 2- or 4-byte
# word set to a value that tends to matter: 0, all ones, past the end,
# small numbers), starts the server and runs against each index:
# omen_verify() with and without heapallindexed, omen_index_info(), a
# search, a drained search, an insert and a delete (rolled back) and
# VACUUM.  Every statement must end, with a result or an error:
#
#  - no backend may die (a crash restarts the cluster: the checkpointer's
#    start time changes and the log says "terminated by signal");
#  - no statement may run past its timeout;
#  - if omen_verify() found nothing, no later statement may report
#    ERRCODE_INDEX_CORRUPTED (else omen_verify() missed damage).
#
# Crashes that follow from a known bug outside omenverify.c, recognized by
# what omen_verify() said about the same damage, are TODO tests, so that
# test/run passes while they are open; any other crash fails.
#
# One place at a time, so that a crash is the damage's own doing and
# omen_verify()'s report of it names the cause.  When gdb is installed, a
# crash is shown with its backtrace (backends may dump core into the data
# directory).
#
# OMEN_FUZZ_ROUNDS (default 5, about 15 s) sets the number of rounds,
# OMEN_FUZZ_DAMAGE (default 1) the most places damaged per index, and
# OMEN_FUZZ_SEED the random seed (default: the time; it is printed, and a
# failure names the damage done).  A long run, in about 6 minutes:
#   OMEN_FUZZ_ROUNDS=150 prove ... t/005_fuzz.pl

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

my $ROUNDS = $ENV{OMEN_FUZZ_ROUNDS} // 5;
my $DAMAGE = $ENV{OMEN_FUZZ_DAMAGE} // 1;    # places damaged per index, at most
my $SEED = $ENV{OMEN_FUZZ_SEED} // time();
my $TIMEOUT = 120;    # seconds for one index's statements
srand($SEED);
note("OMEN_FUZZ_SEED=$SEED OMEN_FUZZ_ROUNDS=$ROUNDS OMEN_FUZZ_DAMAGE=$DAMAGE");

my $BLCKSZ = 8192;
my $HDR = 24;
my $METASIZE = 2896;

# Known bugs outside omenverify.c: what omen_verify() says about damage
# that then crashes a statement, and the TODO explaining it, as pairs
# [qr/omen_verify's message/, 'explanation']
my @KNOWN = (
	# (none left: the four found by this test are fixed, so a crash fails)
);

# ---- the indexes

my @targets = (
	{
		name => 'fz_levels',
		make => q{CREATE TABLE fz_levels AS SELECT id, v FROM src WHERE id <= 600;
			CREATE INDEX fz_levels_idx ON fz_levels USING omen (v) WITH (m = 4, ef_construction = 16);}
	},
	{
		name => 'fz_sq8',
		make => q{CREATE TABLE fz_sq8 AS SELECT id, v FROM src WHERE id <= 600;
			CREATE INDEX fz_sq8_idx ON fz_sq8 USING omen (v) WITH (quantizer = 'sq8', m = 6, ef_construction = 16);}
	},
	{
		name => 'fz_bq',
		make => q{CREATE TABLE fz_bq AS SELECT id, v FROM src WHERE id <= 600;
			CREATE INDEX fz_bq_idx ON fz_bq USING omen (v) WITH (quantizer = 'bq', m = 6, ef_construction = 16);}
	},
	{
		name => 'fz_heap',
		make => q{CREATE TABLE fz_heap AS SELECT id, v FROM src WHERE id <= 600;
			CREATE INDEX fz_heap_idx ON fz_heap USING omen (v) WITH (quantizer = 'bq', vectors = 'heap', m = 6, ef_construction = 16);}
	},
	{
		name => 'fz_half',
		cast => '::halfvec(128)',
		op => '<=>',
		make => q{CREATE TABLE fz_half AS SELECT id,
				(CASE WHEN id % 20 = 0 THEN array_fill(0, ARRAY[128])::vector ELSE v END)::halfvec(128) AS v
				FROM src WHERE id <= 600;
			CREATE INDEX fz_half_idx ON fz_half USING omen (v halfvec_cosine_ops) WITH (m = 6, ef_construction = 16);}
	},
	{
		name => 'fz_segs',
		make => q{CREATE TABLE fz_segs AS SELECT id, v FROM src WHERE id <= 1600;
			SET maintenance_work_mem = '1MB';
			CREATE INDEX fz_segs_idx ON fz_segs USING omen (v) WITH (m = 6, ef_construction = 16);
			RESET maintenance_work_mem;}
	},
	{
		name => 'fz_reuse',
		make => q{CREATE TABLE fz_reuse AS SELECT id, v FROM src WHERE id <= 600;
			CREATE INDEX fz_reuse_idx ON fz_reuse USING omen (v) WITH (m = 6, ef_construction = 16);
			DELETE FROM fz_reuse WHERE id % 4 = 0;
			VACUUM fz_reuse;
			INSERT INTO fz_reuse SELECT id, v FROM src WHERE id > 8000 AND id <= 8100;}
	},
	{
		name => 'fz_ip',
		op => '<#>',
		make => q{CREATE TABLE fz_ip AS SELECT id, v FROM src WHERE id <= 600;
			CREATE INDEX fz_ip_idx ON fz_ip USING omen (v vector_ip_ops) WITH (quantizer = 'sq8', vectors = 'heap', m = 6, ef_construction = 16);}
	},
);

# Let backends dump core, so that a crash can be shown with its backtrace
# (core files land in the data directory: kernel.core_pattern = core)
my $gdb = `command -v gdb 2>/dev/null`;
chomp $gdb;
system('prlimit', '--pid', $$, '--core=unlimited') if $gdb ne '';

# The backtrace of each core file in the data directory, which are removed
sub backtraces
{
	my ($node) = @_;
	my $bt = '';
	my $postgres = `command -v postgres 2>/dev/null`;
	chomp $postgres;
	for my $core (glob($node->data_dir . '/core*'))
	{
		$bt .= `$gdb -batch -ex bt $postgres $core 2>/dev/null | grep '^#' | head -n 25`
		  if $gdb ne '';
		unlink $core;
	}
	return $bt;
}

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
autovacuum = off
restart_after_crash = on
log_statement = none
log_min_messages = warning
shared_buffers = 16MB
});
$node->start;
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION omen CASCADE;
CREATE TABLE src (id int PRIMARY KEY, v vector(128));
COPY src FROM '$qdata/bigann_base.tsv';
});
for my $t (@targets)
{
	$t->{index} = "$t->{name}_idx";
	$t->{cast} //= '';
	$t->{op} //= '<->';
	$node->safe_psql('postgres', $t->{make});
	is( $node->safe_psql(
			'postgres',
			"SELECT elements = (SELECT count(*) FROM $t->{name} WHERE v IS NOT NULL)
			 FROM omen_verify('$t->{index}', true)"),
		't',
		"$t->{index} verifies clean before any damage");
}
$node->safe_psql('postgres', 'VACUUM; CHECKPOINT');

my $keep = PostgreSQL::Test::Utils::tempdir;
for my $t (@targets)
{
	$t->{file} = $node->data_dir . '/'
	  . $node->safe_psql('postgres', "SELECT pg_relation_filepath('$t->{index}')");
}
$node->stop;
for my $t (@targets)
{
	$t->{pristine} = "$keep/$t->{index}";
	copy($t->{file}, $t->{pristine}) or die "copy: $!";
	$t->{nblocks} = (-s $t->{pristine}) / $BLCKSZ;
}

# ---- damage

sub read_bytes
{
	my ($file, $off, $len) = @_;
	open my $fh, '<:raw', $file or die "open $file: $!";
	seek($fh, $off, 0) or die;
	read($fh, my $buf, $len) == $len or die "short read";
	close $fh;
	return $buf;
}

sub write_bytes
{
	my ($file, $off, $bytes) = @_;
	open my $fh, '+<:raw', $file or die "open $file: $!";
	seek($fh, $off, 0) or die;
	print $fh $bytes or die;
	close $fh or die;
	return;
}

# Damage one place of a file; returns what was done, for the record
sub damage_one
{
	my ($file, $nblocks) = @_;
	my ($blk, $off);

	if (rand() < 0.3)
	{
		# the metapage: mostly its settings and first segment
		$blk = 0;
		$off = rand() < 0.7 ? $HDR + int(rand(104)) : $HDR + int(rand($METASIZE));
	}
	else
	{
		$blk = 1 + int(rand($nblocks - 1));
		my ($lower) = unpack('S', read_bytes($file, $blk * $BLCKSZ + 12, 2));
		$lower = $BLCKSZ if $lower < $HDR || $lower > $BLCKSZ;
		my $r = rand();
		if ($r < 0.15) { $off = int(rand($HDR)); }    # page header
		elsif ($r < 0.3) { $off = $BLCKSZ - 16 + int(rand(16)); }    # special space
		else { $off = $HDR + int(rand($lower - $HDR + 1)); }    # contents in use
		$off = $BLCKSZ - 1 if $off >= $BLCKSZ;
	}

	my $pos = $blk * $BLCKSZ + $off;
	my $kind = int(rand(4));
	my ($len, $new);
	if ($kind == 0)
	{
		$len = 1;
		$new = pack('C', ord(read_bytes($file, $pos, 1)) ^ (1 << int(rand(8))));
	}
	elsif ($kind == 1)
	{
		$len = 1;
		$new = pack('C', int(rand(256)));
	}
	elsif ($kind == 2)
	{
		$len = 2;
		$pos -= $pos % 2;
		my @v = (0, 0xFFFF, 0x8000, 1, int(rand(65536)), $nblocks);
		$new = pack('S', $v[ int(rand(@v)) ] & 0xFFFF);
	}
	else
	{
		$len = 4;
		$pos -= $pos % 4;
		my @v = (
			0, 0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0x80000000, 1,
			int(rand(1000)), $nblocks - 1, $nblocks, $nblocks + 1);
		$new = pack('L', $v[ int(rand(@v)) ]);
	}
	my $old = read_bytes($file, $pos, $len);
	write_bytes($file, $pos, $new);
	return sprintf('block %d byte %d: %s -> %s',
		int($pos / $BLCKSZ), $pos % $BLCKSZ, unpack('H*', $old), unpack('H*', $new));
}

# ---- one round

my ($ckpt_start, $log_offset);

sub baseline
{
	$ckpt_start = $node->safe_psql('postgres',
		"SELECT backend_start FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
	$log_offset = -s $node->logfile;
	return;
}

# The statements run against one damaged index, one per line
sub statements
{
	my ($t) = @_;
	my $q = "(SELECT v FROM src WHERE id = 9000)$t->{cast}";
	return (
		"SELECT 'verify', * FROM omen_verify('$t->{index}');",
		"SELECT 'verify heap', * FROM omen_verify('$t->{index}', true);",
		"SELECT 'info', * FROM omen_index_info('$t->{index}');",
		"SELECT 'search', array_agg(id) FROM (SELECT id FROM $t->{name} ORDER BY v $t->{op} $q LIMIT 10) s;",
		"SELECT 'drained', count(*) FROM (SELECT id FROM $t->{name} ORDER BY v $t->{op} (SELECT v FROM src WHERE id = 9001)$t->{cast}) s;",
		"BEGIN;",
		"INSERT INTO $t->{name} SELECT id + 100000, v$t->{cast} FROM src WHERE id > 9100 AND id <= 9110;",
		"DELETE FROM $t->{name} WHERE id % 7 = 0;",
		"ROLLBACK;",
		"VACUUM $t->{name};");
}

my %errcodes;
my %messages;    # a few messages of the codes other than XX002
my $nclean = 0;
my $ncorrupt = 0;

for my $round (1 .. $ROUNDS)
{
	$node->stop('fast');
	for my $t (@targets)
	{
		copy($t->{pristine}, $t->{file}) or die "copy: $!";
		unlink("$t->{file}_fsm");
		$t->{damage} =
		  [ map { damage_one($t->{file}, $t->{nblocks}) } 1 .. 1 + int(rand($DAMAGE)) ];
	}
	$node->start;
	baseline();

	for my $t (@targets)
	{
		my @sql = statements($t);
		my $label = "round $round, $t->{index}";
		my $timed_out = 0;
		my ($ret, $out, $err) = $node->psql(
			'postgres',
			join("\n",
				'\set VERBOSITY verbose',
				'SET enable_seqscan = off;',
				"SET statement_timeout = '60s';", @sql),
			on_error_stop => 0,
			timeout => $TIMEOUT,
			timed_out => \$timed_out);
		my $what = "damage: " . join('; ', @{ $t->{damage} }) . "\nstderr:\n" . ($err // '');

		# error codes by statement: lines 1-3 are settings
		my %failed;
		while ($err =~ /psql:<stdin>:(\d+): ERROR:  (\w{5}): ([^\n]*)/g)
		{
			$failed{ $1 - 3 } = $2;
			$errcodes{$2}++;
			push @{ $messages{$2} }, $3
			  if $2 ne 'XX002' && $2 ne '25P02'
			  && @{ $messages{$2} // [] } < 5
			  && !grep { $_ eq $3 } @{ $messages{$2} // [] };
		}
		my $verify_clean = !exists $failed{1} && !exists $failed{2};
		$verify_clean ? $nclean++ : $ncorrupt++;

		ok(!$timed_out, "$label: the statements end") or diag($what);
		my $crashed = $timed_out || ($ret // 0) == 2
		  || slurp_file($node->logfile, $log_offset) =~ /terminated by signal/;
		my ($todo) = map { $_->[1] } grep { $err =~ $_->[0] } @KNOWN;
		{
			local $TODO = $crashed ? $todo : undef;
			ok(!$crashed, "$label: no backend crashed") or diag($what);
		}
		if ($crashed)
		{
			my $bt = backtraces($node);
			diag("backtrace:\n$bt") if $bt ne '';
			if ($timed_out)
			{
				# a backend stuck where it cannot be cancelled
				$node->stop('immediate');
				$node->start;
			}
			$node->poll_query_until('postgres', 'SELECT 1', '1')
			  or die 'the server did not come back';
			baseline();
			next;
		}
		my @missed = grep { $failed{$_} eq 'XX002' && $_ > 2 } sort keys %failed;
		ok(!$verify_clean || !@missed,
			"$label: omen_verify saw what the statements found")
		  or diag("statement(s) " . join(',', @missed) . " reported corruption\n$what");
	}
}

note("indexes that verified clean after damage: $nclean, damaged: $ncorrupt");
note("errors by SQLSTATE: "
	  . join(', ', map { "$_ x$errcodes{$_}" } sort keys %errcodes));
for my $code (sort keys %messages)
{
	note("$code: $_") for @{ $messages{$code} };
}
$node->stop;

done_testing();
