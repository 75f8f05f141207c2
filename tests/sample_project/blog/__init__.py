"""A blog: users, posts and comments stored with rom."""
