"""Workflow 5, continuous learning (next): daily metrics, knowledge-base gaps and article drafts,
and retraining from reviewers' corrections."""
