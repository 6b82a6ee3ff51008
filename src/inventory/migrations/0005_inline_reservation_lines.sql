-- A reservation's lines (and their location splits) are stored in its own row, as compact JSON,
-- written with the header in one upsert: a reservation is one row in one B-tree instead of a
-- header row plus a line row in a second table whose primary-key index took a scattered page
-- write per new reservation. Rows written before this migration keep `lines` NULL and their
-- lines in reservation_lines, which the store still reads for them; the next change of such a
-- reservation writes its lines inline.
ALTER TABLE reservations ADD COLUMN lines TEXT NULL;
