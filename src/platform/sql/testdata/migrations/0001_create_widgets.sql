-- The first migration: a table and an index; statements end with ';' at a line end.
CREATE TABLE widgets (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);
CREATE INDEX widgets_by_name ON widgets (name);
