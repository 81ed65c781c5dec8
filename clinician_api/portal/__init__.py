"""The patient portal: what a patient sees of their own monitoring, on a phone first.

- :mod:`~clinician_api.portal.wording`: pure plain-language wording (target ranges from the
  patient's own alert settings, a week's verdict, device and battery words);
- :mod:`~clinician_api.portal.charts`: pure SVG geometry of a week's chart (drawn on the server:
  no script, nothing for the CSP to refuse, readable by a screen reader through its text);
- :mod:`~clinician_api.portal.views`: what each page shows, read through ``store``;
- :mod:`~clinician_api.portal.care`: messages and consults, the seams the messaging and video
  work plugs into (empty until wired);
- :mod:`~clinician_api.portal.pages`: the routes (``/portal/...``), each guarded so that a patient
  reaches only their own pages and each leaving one audit row.
"""
