-- The resume event had the kind 'note' (its message said what it was); it
-- has its own kind now.
UPDATE events SET kind = 'resumed' WHERE kind = 'note';
