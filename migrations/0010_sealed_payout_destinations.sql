-- Up Migration

-- Destinations encrypted at rest (lib/destination-vault.ts): the destination's JSON encrypted with a per-row
-- data key (AES-256-GCM, the payout id as additional data), that data key wrapped by the key-encryption key
-- `key_id` of DESTINATION_KEYS. SQL cannot encrypt (the key lives in the environment): rows stored before
-- this migration keep their plaintext until the migrate step (scripts/migrate.ts, the launcher) or
-- `npm run destinations:rewrap` seals them and clears `destination`. The constraint keeps a row either
-- such a leftover or sealed, never both.
ALTER TABLE payout_destinations
  ADD COLUMN key_id      text,
  ADD COLUMN wrapped_key bytea,
  ADD COLUMN ciphertext  bytea,
  ALTER COLUMN destination DROP NOT NULL,
  ADD CONSTRAINT payout_destinations_sealed CHECK (
    (key_id IS NULL) = (ciphertext IS NULL)
    AND (wrapped_key IS NULL) = (ciphertext IS NULL)
    AND (destination IS NULL) = (ciphertext IS NOT NULL)
  );

-- Down Migration
-- Sealed rows cannot be turned back into plaintext by SQL: refuse rather than lose them.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM payout_destinations WHERE ciphertext IS NOT NULL) THEN
    RAISE EXCEPTION 'payout_destinations holds encrypted rows; they cannot be decrypted by a migration';
  END IF;
END $$;
ALTER TABLE payout_destinations
  DROP CONSTRAINT payout_destinations_sealed,
  DROP COLUMN ciphertext,
  DROP COLUMN wrapped_key,
  DROP COLUMN key_id,
  ALTER COLUMN destination SET NOT NULL;
