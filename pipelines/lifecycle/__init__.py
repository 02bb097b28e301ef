"""The end of a case (spec section 7): resolution after the customer's silence or by a reviewer,
with its resolution type, and the CSAT rating every reply asks for."""
