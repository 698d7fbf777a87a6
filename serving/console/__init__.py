"""The web console for loan officers, reviewers and the county centre (issue 17), under /console."""
