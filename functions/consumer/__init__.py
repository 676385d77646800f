"""The event consumer: Kafka call events -> PostgreSQL rows, as an MSK-triggered Lambda
(``functions.consumer.lambda_handler.handler``) or a long-running process (``parley events
consume``), plus replay from a point in time (``parley events replay``)."""
