print("tab:\t|", "nl:\\n", "quote:\"", 'apos:\'', "bs:\\")
print("\97\98\99", "\0651", #"\0", #"a\0b")
print("bell:" .. #"\a\b\f\v\r")
print("multi\
line")
print('single \'quoted\'')
print("\"" == '"', '\'' == "'")
print(#"\255\254", string.byte("\255"))
