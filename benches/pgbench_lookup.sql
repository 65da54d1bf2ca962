\set id random(1, 1000000)
SELECT id, s, amount FROM bench_rows WHERE id = :id;
