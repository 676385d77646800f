-- Undo 0381_webhook_secret_rotation.
-- depends: 0360_webhooks
ALTER TABLE webhook_subscriptions
    DROP COLUMN IF EXISTS secret_rotated_at,
    DROP COLUMN IF EXISTS previous_secret_expires_at,
    DROP COLUMN IF EXISTS previous_secret;
