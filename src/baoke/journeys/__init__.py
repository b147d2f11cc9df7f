"""Journeys: playbooks run for real customers, day by day and event by event.

A journey is one customer's way through one playbook. The daily run enrols customers from
segment entries, record dates, festivals and events, then advances every journey that is due,
set-based: all journeys waiting at the same step of the same playbook move together. Each
decision is stored with its reason; touches and tasks are stored as *candidates* for the
contact policy, keyed so that evaluating the same moment twice never makes a second one.
"""
