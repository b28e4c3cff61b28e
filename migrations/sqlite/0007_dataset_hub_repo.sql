-- Where an imported dataset came from (a Hub dataset repository, owner/name),
-- so a model card can name it in its Hub metadata; NULL for uploads.
ALTER TABLE datasets ADD COLUMN hub_repo TEXT;
