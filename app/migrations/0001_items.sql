-- The items table. Limits mirror the API contract so that the database
-- itself refuses what the API would refuse, whoever writes to it.
CREATE TABLE items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    description text,
    price       numeric(12, 2) NOT NULL,
    quantity    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer NOT NULL DEFAULT 1,
    CONSTRAINT items_name_key UNIQUE (name),
    CONSTRAINT items_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT items_description_length CHECK (char_length(description) <= 2000),
    CONSTRAINT items_price_range CHECK (price >= 0 AND price < 10000000000),
    CONSTRAINT items_quantity_range CHECK (quantity >= 0),
    CONSTRAINT items_version_positive CHECK (version >= 1)
);

-- Keyset pagination walks (sort column, id); the unique constraint already
-- indexes name, and the primary key id.
CREATE INDEX items_price_id ON items (price, id);
CREATE INDEX items_quantity_id ON items (quantity, id);
CREATE INDEX items_created_at_id ON items (created_at, id);
CREATE INDEX items_updated_at_id ON items (updated_at, id);

-- The key that signs pagination cursors. It lives in the database so that
-- every worker and every replica shares it without extra configuration.
-- gen_random_uuid() draws from PostgreSQL's strong random source.
CREATE TABLE cursor_key (
    single boolean PRIMARY KEY DEFAULT true CHECK (single),
    key    bytea NOT NULL CHECK (octet_length(key) >= 32)
);
INSERT INTO cursor_key (key)
VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
