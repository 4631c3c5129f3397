# Copyright (c) omen contributors
#
# 001_extension.pl: the extension installs into a fresh cluster and its
# basic SQL functions answer.  Also proves the TAP pipeline of test/run.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION omen CASCADE');

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname IN ('omen', 'vector')"
	),
	'omen,vector',
	'CREATE EXTENSION omen CASCADE installs vector too');

like($node->safe_psql('postgres', 'SELECT omen_simd_level()'),
	qr/^(scalar|avx2|avx512)$/, 'omen_simd_level() names a known level');

is( $node->safe_psql(
		'postgres',
		"SELECT omen_l2_distance('[1,2,3]'::vector, '[4,6,3]'::vector)"),
	'5',
	'omen_l2_distance of a 3-4-5 triangle is 5');

$node->stop;

done_testing();
