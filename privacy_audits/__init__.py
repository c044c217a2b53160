"""Membership-inference privacy audit: targets, shadow runs, attacks, metrics and reports."""
