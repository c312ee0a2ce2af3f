"""Durable object storage for recordings and identity's files: a local folder or S3 with Object
Lock (issue 12), behind one `Storage` interface that both features write through."""
