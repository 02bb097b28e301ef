"""The local triager: a classifier trained on labelled history (TF-IDF SVM, embeddings, a fine-tuned
MiniLM, nearest-neighbour memories), stored in the database, offline."""
