-- The sender of a message a person reviews as a possible opt-out ("no más",
-- "stop sending it to my old address"), as a contact key ("phone:+1312..."):
-- patient data, kept only for such messages, so that a review that decides
-- "opt-out" revokes that number from the message's receipt.
ALTER TABLE inbound ADD COLUMN sender TEXT;
