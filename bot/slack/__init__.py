"""The Slack runtime: the Bolt app (Socket Mode or HTTP), the group commit of reviewers' clicks, the
Web API chores the services share, the thread poster replies go through, and the recorder `cx demo` uses."""
