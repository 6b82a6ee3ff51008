ALTER TABLE widgets ADD COLUMN colour TEXT NOT NULL DEFAULT 'grey; or not';
-- A comment that ends with a semicolon does not end a statement;
INSERT INTO widgets (id, name) VALUES (1, 'first');
