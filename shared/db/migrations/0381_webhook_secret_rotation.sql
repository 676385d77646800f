-- Rotating a webhook's secret: the secret it replaced keeps signing deliveries (a second
-- signature beside the new one) until previous_secret_expires_at, so a receiver can switch to
-- the new secret without refusing a delivery.
-- depends: 0360_webhooks

ALTER TABLE webhook_subscriptions
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN secret_rotated_at timestamptz;
