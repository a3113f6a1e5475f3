"""The event plane of the twins: buckets that notify MinIO's Kafka target, and the topics.

- `plan.py`: pure: which queue configs a twin wants on which bucket, what changes (unit-tested).
- `secrets.py`: a twin's S3 credentials from Secrets in its namespace, through the API.
- `buckets.py`: the MinIO calls (bucket exists, queue configs replaced), each write counted.
- `wiring.py`: one twin's wiring per reconcile, and its removal on delete (`status.buckets`).
- `topics.py`: the topics, ensured once at operator start-up and retried until Kafka answers.
"""
